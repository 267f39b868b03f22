# rdp-bench workflow: data -> MSH -> diffusion decoder -> bitstreams -> decode grid -> metrics
# -> tables -> figures. Every rule runs one `python -m bench ...` command; the config is validated
# against bench/schema.yaml (defaults filled) before any rule is built.
import os
import shlex
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import update_config

from bench.config import typed_config_overrides, validate_config
from bench.utils import BenchError

# A --configfile is the whole config (the schema's defaults fill what it leaves out), the same as
# `python -m bench --config FILE` reads. configs/default.yaml, found beside this Snakefile, runs only
# when none is given: Snakemake's `configfile:` would merge it *under* the user's file, so in the
# checkout (and only there) a key the user's config leaves out silently took default.yaml's value.
if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "configs", "default.yaml")


# --config values nested as YAML arrive with every scalar a string (Snakemake's BaseLoader): type them.
update_config(config, typed_config_overrides(workflow.config_settings.overwrite_config or {}))
try:  # the CLI's check: same schema, same one-line message, defaults filled
    config.update(validate_config(config))
except BenchError as err:
    raise WorkflowError(str(err)) from None

# Every rule runs `python -m bench ...`: the interpreter running Snakemake (its folder leads PATH in
# every job), so a job never picks another Python from the user's PATH.
PYTHON_BIN = os.path.dirname(sys.executable)
if not os.path.isfile(os.path.join(PYTHON_BIN, "python")):
    raise WorkflowError(
        f"the rules run `python -m bench`, but {PYTHON_BIN} (Snakemake runs under {sys.executable}) has no "
        "`python`: run Snakemake from the virtual environment or conda environment of the README's setup"
    )
shell.prefix(f'set -euo pipefail; export PATH={shlex.quote(PYTHON_BIN)}:"$PATH"; ')


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/decode.smk"
include: "workflow/rules/byo.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/perf.smk"


rule all:
    input:
        expand("results/{dataset}/summary.csv", dataset=EVAL_DATASETS),
        expand("figures/{kind}_{dataset}.pdf", kind=FIGURES, dataset=EVAL_DATASETS),
