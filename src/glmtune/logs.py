"""How the `glmtune` command logs: glmtune's own INFO lines, other libraries' warnings, minus one false alarm.

peft imports bitsandbytes whenever it is installed (peft 0.21: `import peft` runs
peft/helpers.py's `import bitsandbytes`), and transformers' training arguments import peft
(transformers/trainer_utils.py), so every training run imports bitsandbytes, quantized or not;
neither library offers a switch. On CPUs with AVX512-BF16, bitsandbytes (0.50,
backends/cpu/ops.py) then warns at import that its optional 4-bit CPU kernel is missing:
advice for 4-bit matmuls, which a run that quantizes nothing never does. The filter matches
that message's text only, so a later bitsandbytes that words it differently is shown again.
"""

import logging

FORMAT = "%(levelname)s %(name)s: %(message)s"
BNB_CPU_LOGGER = "bitsandbytes.backends.cpu.ops"
BNB_KERNEL_WARNING = "Failed to load CPU gemm_4bit_forward from kernels-community"


class DropMessage(logging.Filter):
    """Drop the records whose message starts with one known text; let every other record through."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


# One instance, so configuring twice adds it once.
UNUSED_BNB_KERNEL = DropMessage(BNB_KERNEL_WARNING)


def configure_logging(quantized: bool) -> None:
    """Show glmtune's INFO lines (where a model was exported, which data was cached) and other libraries' warnings.

    The bitsandbytes kernel warning stays visible when the command quantizes, where it can matter.
    """
    logging.basicConfig(level=logging.WARNING, format=FORMAT)
    logging.getLogger("glmtune").setLevel(logging.INFO)
    if not quantized:
        logging.getLogger(BNB_CPU_LOGGER).addFilter(UNUSED_BNB_KERNEL)
