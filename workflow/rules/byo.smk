# Bring-your-own codecs (config key baselines.byo): each entry's folder of foreign reconstructions is
# checked against the evaluation images here, then measured in place by the metrics_byo rule as the point
# byo-NAME of group "byo" (evaluate.smk), like every other point.


rule byo_check:
    """Check a bring-your-own folder (names, sizes, one rate per image); write its per-image bpp table."""
    input:
        reference=f"{DATA}/eval/{{dataset}}",
        reconstructions=lambda wc: byo_entry(wc.dataset, wc.byo_point)["reconstructions"],
        rate=lambda wc: byo_rate(byo_entry(wc.dataset, wc.byo_point))[1],
    output:
        "work/{dataset}/byo/bpp/{byo_point}.csv",
    log:
        "logs/byo_check/{dataset}/{byo_point}.log",
    benchmark:
        "benchmarks/byo_check/{dataset}/{byo_point}.tsv"
    conda:
        CONDA_ENV
    params:
        rate=lambda wc: byo_rate(byo_entry(wc.dataset, wc.byo_point))[0],
    shell:
        "python -m bench byo-check --reference {input.reference:q} --reconstructions {input.reconstructions:q} "
        "{params.rate} {input.rate:q} --out {output} > {log} 2>&1"
