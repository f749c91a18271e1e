"""Test-wide setup: everything offline, nothing read from the user's environment."""

import os
import sys
from pathlib import Path

# Must happen before anything imports huggingface_hub / openai.
os.environ["HF_HUB_OFFLINE"] = "1"
# The tiny models are far too small to gain from threads; on 2 shared cores, torch's thread
# pool only adds contention (measured: 6 tiny edits 3.5 s with one thread, 42 s with two).
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Importing rembg loads numba, which resets the process's thread count to numba's own default
# (every core) unless it is told otherwise.
os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
for _var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "REGIONEDIT_LLM_MODEL",
             "REGIONEDIT_LLM_TIMEOUT", "REGIONEDIT_LLM_ATTEMPTS"):
    os.environ.pop(_var, None)

sys.path.insert(0, str(Path(__file__).parent))

pytest_plugins = [
    "support.fake_llm",
    "support.tiny_rembg",
    "support.tiny_sd",
    "support.photos",
]
