# Bitstreams and reconstructions: each dataset is encoded once per quality; every decoder point
# reads the same bits. JPEG is the classical baseline that always runs.


rule encode:
    """Encode the evaluation images to MSH bitstream files (one .bin per image)."""
    input:
        images=f"{DATA}/eval/{{dataset}}",
        msh=msh_checkpoint,
    output:
        directory("work/{dataset}/q{quality}/bits"),
    log:
        "logs/encode/{dataset}/q{quality}.log",
    benchmark:
        "benchmarks/encode/{dataset}/q{quality}.tsv"
    conda:
        CONDA_ENV
    threads: TORCH_THREADS
    params:
        numerics=NUMERICS_ARG,
        device=config["device"],
    shell:
        "python -m bench {params.numerics} --threads {threads} encode {input.images} {output} "
        "--quality {wildcards.quality} --checkpoint {input.msh} --device {params.device} > {log} 2>&1"


rule decode_msh:
    """Decode the bitstreams with the MSH synthesis transform."""
    input:
        bits="work/{dataset}/q{quality}/bits",
        msh=msh_checkpoint,
    output:
        directory("work/{dataset}/q{quality}/msh"),
    log:
        "logs/decode/{dataset}/q{quality}/msh.log",
    benchmark:
        "benchmarks/decode/{dataset}/q{quality}/msh.tsv"
    conda:
        CONDA_ENV
    threads: TORCH_THREADS
    params:
        numerics=NUMERICS_ARG,
        device=config["device"],
    shell:
        "python -m bench {params.numerics} --threads {threads} decode {input.bits} {output} --decoder msh "
        "--checkpoint {input.msh} --device {params.device} --record {output}/decode.json > {log} 2>&1"


rule decode_diffusion:
    """Decode the same bitstreams with the diffusion decoder at one sampler point."""
    input:
        bits="work/{dataset}/q{quality}/bits",
        msh=msh_checkpoint,
        decoder=f"{config['decoder']['checkpoint_dir']}/q{{quality}}.pt",
    output:
        directory("work/{dataset}/q{quality}/{diffusion_point}"),
    log:
        "logs/decode/{dataset}/q{quality}/{diffusion_point}.log",
    benchmark:
        "benchmarks/decode/{dataset}/q{quality}/{diffusion_point}.tsv"
    conda:
        CONDA_ENV
    threads: TORCH_THREADS
    resources:
        gpu=GPU_PER_JOB,
    params:
        numerics=NUMERICS_ARG,
        device=config["device"],
        batch=config["sampling"]["batch_size"],
        clip="--clip" if config["sampling"]["clip_denoised"] else "--no-clip",
        compile="--compile" if config["sampling"]["compile"] else "--no-compile",
    shell:
        "python -m bench {params.numerics} --threads {threads} decode {input.bits} {output} --decoder diffusion "
        "--checkpoint {input.msh} --decoder-checkpoint {input.decoder} --point {wildcards.diffusion_point} "
        "{params.clip} {params.compile} --batch-size {params.batch} --device {params.device} "
        "--record {output}/decode.json > {log} 2>&1"


rule jpeg:
    """The JPEG baseline at one quality: JPEG files as bitstreams, decoded PNGs as reconstructions."""
    input:
        images=f"{DATA}/eval/{{dataset}}",
    output:
        bits=directory("work/{dataset}/jpeg/bits/{jpeg_point}"),
        recon=directory("work/{dataset}/jpeg/{jpeg_point}"),
    log:
        "logs/jpeg/{dataset}/{jpeg_point}.log",
    benchmark:
        "benchmarks/jpeg/{dataset}/{jpeg_point}.tsv"
    conda:
        CONDA_ENV
    params:
        quality=lambda wildcards: parse_point(wildcards.jpeg_point).quality,
    shell:
        "python -m bench jpeg --reference {input.images} --quality {params.quality} --bitstreams {output.bits} "
        "--out {output.recon} > {log} 2>&1"
