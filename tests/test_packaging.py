"""The installed package finds its prompts: they ship inside the wheel, not only in a checkout."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_carries_the_prompts(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
         "-q", "-w", str(tmp_path)],
        check=True, capture_output=True, text=True,
    )
    (wheel,) = tmp_path.glob("regionedit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for prompt in (REPO / "prompts").glob("*.md"):
        assert f"regionedit/prompts/{prompt.name}" in names
    assert "regionedit/data/offline_lexicon.txt" in names
    for page in ("edit.html", "review.html", "api.html", "app.css", "common.js"):
        assert f"regionedit/web/static/{page}" in names  # the web app's pages

    # and the prompt loader finds them there, away from the checkout
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import regionedit.prompts as p; assert p.__file__.startswith(sys.argv[1]), p.__file__;"
        "print(p.load_prompt('classify_region').id)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(site)], capture_output=True, text=True,
                         cwd=tmp_path, check=True)
    assert out.stdout.strip().startswith("classify_region-v")
