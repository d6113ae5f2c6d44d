"""How the `glmtune` command logs: glmtune's own INFO lines, other libraries' warnings, minus one false alarm.

peft imports bitsandbytes whenever it is installed (peft 0.21: `import peft` runs
peft/helpers.py's `import bitsandbytes`), and transformers' training arguments import peft
(transformers/trainer_utils.py), so every training run imports bitsandbytes, quantized or not;
neither library offers a switch. On CPUs with AVX512-BF16, bitsandbytes (0.50,
backends/cpu/ops.py) then warns at import that its optional 4-bit CPU kernel is missing:
advice for 4-bit matmuls, which a run that quantizes nothing never does. Where the `kernels`
package is installed (transformers 5.25 requires it), looking that kernel up on the Hub also makes
`kernels` warn that it skipped the publisher check in offline mode. The filters match those
messages' text only, so a later version that words them differently is shown again.
"""

import logging

FORMAT = "%(levelname)s %(name)s: %(message)s"
# logger -> the start of its message: bitsandbytes' import-time lookup of its optional 4-bit CPU kernel
UNUSED_BNB_KERNEL_WARNINGS = {
    "bitsandbytes.backends.cpu.ops": "Failed to load CPU gemm_4bit_forward from kernels-community",
    "kernels._internals.hf_hub": "Skipping publisher trust check for 'kernels-community/quantization-bitsandbytes'",
}


class DropMessage(logging.Filter):
    """Drop the records whose message starts with one known text; let every other record through."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


# One instance per logger, so configuring twice adds each once.
UNUSED_BNB_KERNEL_FILTERS = {logger: DropMessage(prefix) for logger, prefix in UNUSED_BNB_KERNEL_WARNINGS.items()}


def configure_logging(quantized: bool) -> None:
    """Show glmtune's INFO lines (where a model was exported, which data was cached) and other libraries' warnings.

    The bitsandbytes kernel warnings stay visible when the command quantizes, where they can matter.
    """
    logging.basicConfig(level=logging.WARNING, format=FORMAT)
    logging.getLogger("glmtune").setLevel(logging.INFO)
    if not quantized:
        for logger, drop in UNUSED_BNB_KERNEL_FILTERS.items():
            logging.getLogger(logger).addFilter(drop)
