"""The agent's configuration file (written by `register`, read by everything else)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_CACHE_DIR = str(Path.home() / ".cache" / "render-agent")
DEFAULT_PATH = Path(os.environ.get("RENDER_AGENT_CONFIG", Path.home() / ".config" / "render-agent" / "config.json"))


@dataclass
class AgentConfig:
    server: str
    token: str
    cache_dir: str = DEFAULT_CACHE_DIR
    device: str = "auto"  # cpu|cuda|optix|hip|auto
    gpus: list[int] = field(default_factory=list)
    threads: int = 0
    max_vram_mb: int = 0
    max_render_seconds: int = 0
    schedule: str = ""  # "22:00-07:00": only take work in that window

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.chmod(tmp, 0o600)  # holds the node token
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> AgentConfig:
        if not path.exists():
            raise FileNotFoundError(f"no agent config at {path}: run `python -m workers register` first")
        data = json.loads(path.read_text())
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)
