"""Loss curves from metrics.jsonl, saved as PNG next to the checkpoints."""

from pathlib import Path

from glmtune.metrics_file import read_metric, smooth


def plot_loss(output_dir: str | Path) -> Path | None:
    """Write training_loss.png (training loss, smoothed, and eval_loss when present)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output_dir = Path(output_dir)
    steps, losses = read_metric(output_dir, "loss")
    if not steps:
        return None
    figure, axes = plt.subplots(figsize=(7, 4.5))
    axes.plot(steps, losses, alpha=0.35, color="tab:blue", label="train loss")
    axes.plot(steps, smooth(losses), color="tab:blue", label="train loss (smoothed)")
    eval_steps, eval_losses = read_metric(output_dir, "eval_loss")
    if eval_steps:
        axes.plot(eval_steps, eval_losses, "o-", color="tab:orange", label="eval loss")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_title(f"training loss: {output_dir.name}")
    axes.legend()
    path = output_dir / "training_loss.png"
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path
