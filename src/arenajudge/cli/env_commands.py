"""``arenajudge env``: the environment, to paste into a bug report."""

from __future__ import annotations

from typing import Any

import click

from arenajudge.cli import main
from arenajudge.cli.options import echo_json, format_option
from arenajudge.env import collect_environment


def _gpu_lines(gpu: dict[str, Any] | None) -> list[str]:
    if gpu is None:
        return ["- GPUs: unknown (torch is not installed)"]
    if "error" in gpu:
        return [f"- torch {gpu['torch']} cannot be imported: {gpu['error']}"]
    lines = [
        f"- CUDA: {gpu['cuda_version'] or 'none'} "
        f"({'available' if gpu['cuda_available'] else 'no usable GPU'})"
    ]
    for card in gpu["gpus"]:
        lines.append(
            f"- GPU {card['index']}: {card['name']}, compute capability "
            f"{card['compute_capability']}, {card['memory_gib']} GiB, "
            f"bf16 {'yes' if card['bf16'] else 'no'}"
        )
    return lines


@main.command("env")
@format_option
def env_command(output_format: str) -> None:
    """Print versions of arenajudge, Python and every stack it uses, CPUs and GPUs.

    Paste the output into a bug report. Packages that are not installed show as
    "not installed"; torch is imported only when installed, to list the GPUs.
    """
    env = collect_environment()
    if output_format == "json":
        echo_json(env)
        return
    lines = [
        f"- arenajudge: {env['arenajudge']}",
        f"- Python: {env['python']}",
        f"- platform: {env['platform']}",
        f"- CPUs: {env['cpu_count']} ({env['usable_cores']} usable by this process)",
    ]
    for group in ("core_packages", "optional_packages"):
        for name, version in env[group].items():
            lines.append(f"- {name}: {version or 'not installed'}")
    click.echo("\n".join(lines + _gpu_lines(env["gpu"])))
