"""Test-wide setup: everything offline, nothing read from the user's environment."""

import os
import sys
from pathlib import Path

# Must happen before anything imports huggingface_hub / openai.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
for _var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "REGIONEDIT_LLM_MODEL"):
    os.environ.pop(_var, None)

sys.path.insert(0, str(Path(__file__).parent))

pytest_plugins = [
    "support.fake_llm",
    "support.tiny_rembg",
    "support.tiny_sd",
    "support.photos",
]
