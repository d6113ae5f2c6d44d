"""`python -m glmtune.webui.contained_job WORKSPACE COMMAND ARGS...`: how the web UI runs every job.

The page checks a job's datasets against the workspace when Start is pressed, but dataset_info.json or a
symlink may change before the job reads them (a time-of-check to time-of-use gap: a job's process takes
seconds to start). So the job checks again in its own process, then runs `glmtune COMMAND ARGS...` there;
a training run reads its data before it loads the model, so little time is left between this check and
the read.
"""

import sys
from collections.abc import Sequence

from glmtune.errors import GlmtuneError
from glmtune.hparams.parser import peek_settings
from glmtune.hparams.validation import split_names
from glmtune.webui.forms import chosen_datasets
from glmtune.webui.workspace import Workspace

DATASET_SETTINGS = ("dataset", "eval_dataset")


def recheck_datasets(workspace: Workspace, argv: Sequence[str]) -> None:
    """The datasets the command line (or its CONFIG.yaml) names, and every file they read, still inside the
    workspace."""
    settings = peek_settings(argv, (*DATASET_SETTINGS, "dataset_dir"))
    for name in DATASET_SETTINGS:
        if settings[name]:
            chosen_datasets(workspace, settings["dataset_dir"], split_names(str(settings[name])))


def main(argv: Sequence[str]) -> int:
    root, command, *arguments = argv
    try:
        recheck_datasets(Workspace.at(root), arguments)
    except GlmtuneError as error:
        print(f"glmtune {command}: error: {error}", file=sys.stderr)
        return 2
    from glmtune import cli

    return cli.main([command, *arguments])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
