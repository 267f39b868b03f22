# rdp-bench workflow. Every rule is one `python -m bench ...` command; the config is validated
# against bench/schema.yaml (defaults filled) before any rule is built.
import os
import sys

from snakemake.utils import validate

from bench.data import DATASETS

configfile: "configs/default.yaml"
validate(config, "bench/schema.yaml", set_default=True)

PY = sys.executable  # the interpreter running Snakemake also runs every step
MIRROR = os.environ.get("BENCH_DATA_MIRROR") or config["data_mirror"]
MIRROR_ARG = f"--mirror {MIRROR}" if MIRROR else ""
DATA = config["data_root"]

wildcard_constraints:
    dataset="|".join(sorted(DATASETS)),


rule all:
    input:
        expand(f"{DATA}/eval/{{dataset}}", dataset=config["datasets"]["eval"]),


rule prepare_dataset:
    """Fetch (or copy from the mirror) and verify a dataset, then write its evaluation images."""
    output:
        directory(f"{DATA}/eval/{{dataset}}"),
    log:
        "logs/prepare_dataset/{dataset}.log",
    benchmark:
        "benchmarks/prepare_dataset/{dataset}.tsv"
    params:
        max_images=f"--max-images {config['datasets']['max_images']}" if config["datasets"]["max_images"] else "",
        crop=f"--crop {config['datasets']['eval_crop']}" if config["datasets"]["eval_crop"] else "",
    shell:
        "{PY} -m bench datasets prepare {wildcards.dataset} --root {DATA}/raw --out {output} "
        "{MIRROR_ARG} {params.max_images} {params.crop} > {log} 2>&1"
