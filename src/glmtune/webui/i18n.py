"""English and Chinese labels, and the switch that relabels every registered component."""

from dataclasses import dataclass, field
from typing import Any

import gradio as gr

LANGUAGES = ("English", "中文")
TEXTS: dict[str, tuple[str, str]] = {
    "title": ("## glmtune: fine-tune, evaluate, chat, export", "## glmtune：微调、评估、对话、导出"),
    "language": ("Language", "语言"),
    "workspace": ("Workspace (every path is inside it)", "工作区（所有路径都在其中）"),
    "tab_train": ("Train", "训练"),
    "tab_eval": ("Evaluate", "评估"),
    "tab_chat": ("Chat", "对话"),
    "tab_export": ("Export", "导出"),
    "model": ("Model path (empty: the default smollm2-135m)", "模型路径（留空：默认模型 smollm2-135m）"),
    "adapter": ("Adapter / checkpoint path", "适配器 / 检查点路径"),
    "dataset_dir": ("Dataset folder (empty: glmtune's bundled datasets)", "数据集目录（留空：glmtune 自带数据集）"),
    "datasets": ("Datasets", "数据集"),
    "dataset": ("Dataset", "数据集"),
    "refresh_datasets": ("Refresh datasets", "刷新数据集"),
    "preview": ("Preview rows", "预览样本"),
    "preview_box": ("Rendered rows (tokens that carry loss between ⟦ ⟧)", "渲染后的样本（⟦ ⟧ 内为计算损失的词元）"),
    "template": ("Template", "对话模板"),
    "stage": ("Stage", "训练阶段"),
    "finetuning_type": ("Fine-tuning method", "微调方法"),
    "learning_rate": ("Learning rate (0: the default of the method or dataset)", "学习率（0：该方法或数据集的默认值）"),
    "num_train_epochs": ("Epochs", "训练轮数"),
    "max_steps": ("Max steps (-1: by epochs)", "最大步数（-1：按轮数）"),
    "batch_size": ("Batch size per device (0: the default, glmtune's or the dataset's)", "每设备批大小（0：默认值，glmtune或数据集的）"),
    "grad_accum": ("Gradient accumulation", "梯度累积"),
    "cutoff_len": ("Cutoff length (tokens)", "截断长度（词元）"),
    "max_samples": ("Max samples per dataset (0: all)", "每个数据集最大样本数（0：全部）"),
    "val_size": ("Validation size", "验证集比例"),
    "lora_rank": ("LoRA rank", "LoRA 秩"),
    "lora_target": ("LoRA target modules", "LoRA 目标模块"),
    "logging_steps": ("Log every N steps", "每 N 步记录日志"),
    "save_steps": ("Save every N steps", "每 N 步保存"),
    "output_dir": ("Output folder", "输出目录"),
    "command": ("Command line equivalent", "等价的命令行"),
    "start": ("Start", "开始"),
    "stop": ("Stop", "停止"),
    "jobs": ("Jobs", "任务"),
    "job": ("Job", "任务"),
    "status": ("Status", "状态"),
    "log": ("Log", "日志"),
    "loss_plot": ("Loss", "损失"),
    "run_eval": ("Run evaluation", "开始评估"),
    "eval_output_dir": ("Results folder", "结果目录"),
    "eval_max_samples": ("Samples to evaluate", "评估样本数"),
    "metrics": ("Metrics", "指标"),
    "predictions": ("Predictions", "预测结果"),
    "load_model": ("Load model", "加载模型"),
    "unload_model": ("Unload", "卸载"),
    "chatbot": ("Conversation", "对话"),
    "message": ("Message (Enter to send)", "输入消息（回车发送）"),
    "send": ("Send", "发送"),
    "clear": ("Clear", "清空"),
    "system": ("System prompt (optional)", "系统提示词（可选）"),
    "max_new_tokens": ("Max new tokens", "最大生成长度"),
    "temperature": ("Temperature (0: greedy)", "温度（0：贪心解码）"),
    "export_dir": ("Export folder", "导出目录"),
    "export_overwrite": ("Overwrite a non-empty folder", "覆盖非空目录"),
    "run_export": ("Export", "导出"),
}


def text(key: str, language: str) -> str:
    english, chinese = TEXTS[key]
    return chinese if language == LANGUAGES[1] else english


@dataclass
class Labels:
    """Components whose label (or button text, or markdown) follows the language switch."""

    entries: list[tuple[Any, str, str]] = field(default_factory=list)

    def add(self, component: Any, key: str, attribute: str = "label") -> Any:
        self.entries.append((component, key, attribute))
        return component

    @property
    def components(self) -> list[Any]:
        return [component for component, _, _ in self.entries]

    def updates(self, language: str) -> list[Any]:
        return [gr.update(**{attribute: text(key, language)}) for _, key, attribute in self.entries]
