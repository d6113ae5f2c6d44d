"""Loss curves from metrics.jsonl, saved as PNG next to the checkpoints."""

from pathlib import Path

from glmtune.metrics_file import read_metric, smooth

# Series some stages log beside the loss (ppo: the answers' reward, their KL to the reference, the value loss);
# each one a run has gets a panel of its own under the loss.
SIDE_CURVES = ("reward", "kl", "value_loss")


def plot_loss(output_dir: str | Path) -> Path | None:
    """Write training_loss.png (training loss, smoothed, and eval_loss when present; panels for SIDE_CURVES)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output_dir = Path(output_dir)
    steps, losses = read_metric(output_dir, "loss")
    if not steps:
        return None
    sides = [(name, *read_metric(output_dir, name)) for name in SIDE_CURVES]
    sides = [side for side in sides if side[1]]
    figure, panels = plt.subplots(1 + len(sides), 1, figsize=(7, 4.5 + 2.5 * len(sides)), squeeze=False)
    axes = panels[0][0]
    axes.plot(steps, losses, alpha=0.35, color="tab:blue", label="train loss")
    axes.plot(steps, smooth(losses), color="tab:blue", label="train loss (smoothed)")
    eval_steps, eval_losses = read_metric(output_dir, "eval_loss")
    if eval_steps:
        axes.plot(eval_steps, eval_losses, "o-", color="tab:orange", label="eval loss")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_title(f"training loss: {output_dir.name}")
    axes.legend()
    for (name, side_steps, values), [side_axes] in zip(sides, panels[1:]):
        side_axes.plot(side_steps, values, alpha=0.35, color="tab:green")
        side_axes.plot(side_steps, smooth(values), color="tab:green")
        side_axes.set_xlabel("step")
        side_axes.set_ylabel(name)
    figure.tight_layout()
    path = output_dir / "training_loss.png"
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path
