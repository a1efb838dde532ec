"""Takes docs/receiver.png: the README's demo (`cvh-camera demo`) as headless Chromium shows it.

.venv/bin/python scripts/screenshot.py [docs/receiver.png]
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import tempfile
from pathlib import Path

from tests.support.chromium import chromium


async def main(target: Path) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="cvh-shot-"))
    demo = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cvh_camera", "demo", "--port", "0", "--workdir", str(workdir),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert demo.stdout is not None
    try:
        text = ""
        async with asyncio.timeout(60):
            while "receiver page" not in text:
                line = (await demo.stdout.readline()).decode()
                if not line:
                    raise SystemExit("the demo ended before it was running")
                text += line
        url = re.search(r"receiver page\s+(\S+)", text)[1]  # type: ignore[index]
        async with chromium() as browser:
            page = await browser.new_page(viewport={"width": 1280, "height": 760})
            await page.goto(url + "?stats")
            # live video, and the overlay has measured a bitrate
            overlay = "document.querySelector('.feed .stats')?.textContent"
            measured = f"() => /[1-9][0-9]* kbit/.test({overlay})"
            await page.wait_for_function(measured, timeout=60_000)
            await page.screenshot(path=str(target))
        print(f"wrote {target}")
    finally:
        demo.send_signal(signal.SIGTERM)
        await asyncio.wait_for(demo.wait(), 20)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/receiver.png")))
