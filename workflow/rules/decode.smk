# Bitstreams and reconstructions: each dataset is encoded once per quality; every decoder point
# reads the same bits. JPEG is the classical baseline that always runs.


rule encode:
    """Encode the evaluation images to MSH bitstream files (one .bin per image)."""
    input:
        images=f"{DATA}/eval/{{dataset}}",
        msh=msh_checkpoint,
    output:
        directory("work/{dataset}/q{quality}/bits"),
    threads: TORCH_THREADS
    log:
        "logs/encode/{dataset}/q{quality}.log",
    benchmark:
        "benchmarks/encode/{dataset}/q{quality}.tsv"
    shell:
        "{PY} -m bench {NUMERICS_ARG} --threads {threads} encode {input.images} {output} --quality {wildcards.quality} --checkpoint {input.msh} "
        "--device {config[device]} > {log} 2>&1"


rule decode_msh:
    """Decode the bitstreams with the MSH synthesis transform."""
    input:
        bits="work/{dataset}/q{quality}/bits",
        msh=msh_checkpoint,
    output:
        directory("work/{dataset}/q{quality}/msh"),
    threads: TORCH_THREADS
    log:
        "logs/decode/{dataset}/q{quality}/msh.log",
    benchmark:
        "benchmarks/decode/{dataset}/q{quality}/msh.tsv"
    shell:
        "{PY} -m bench {NUMERICS_ARG} --threads {threads} decode {input.bits} {output} --decoder msh --checkpoint {input.msh} "
        "--device {config[device]} --record {output}/decode.json > {log} 2>&1"


rule decode_diffusion:
    """Decode the same bitstreams with the diffusion decoder at one sampler point."""
    input:
        bits="work/{dataset}/q{quality}/bits",
        msh=msh_checkpoint,
        decoder=f"{config['decoder']['checkpoint_dir']}/q{{quality}}.pt",
    output:
        directory("work/{dataset}/q{quality}/{diffusion_point}"),
    threads: TORCH_THREADS
    log:
        "logs/decode/{dataset}/q{quality}/{diffusion_point}.log",
    benchmark:
        "benchmarks/decode/{dataset}/q{quality}/{diffusion_point}.tsv"
    params:
        batch=config["sampling"]["batch_size"],
        clip="--clip" if config["sampling"]["clip_denoised"] else "--no-clip",
        compile="--compile" if config["sampling"]["compile"] else "--no-compile",
    resources:
        gpu=GPU_PER_JOB,
    shell:
        "{PY} -m bench {NUMERICS_ARG} --threads {threads} decode {input.bits} {output} --decoder diffusion --checkpoint {input.msh} "
        "--decoder-checkpoint {input.decoder} --point {wildcards.diffusion_point} {params.clip} {params.compile} --batch-size {params.batch} "
        "--device {config[device]} --record {output}/decode.json > {log} 2>&1"


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
    params:
        quality=lambda wildcards: parse_point(wildcards.jpeg_point).quality,
    shell:
        "{PY} -m bench jpeg --reference {input.images} --quality {params.quality} --bitstreams {output.bits} "
        "--out {output.recon} > {log} 2>&1"
