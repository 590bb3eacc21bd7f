"""Task commands the tests submit: small Python programs run with this interpreter."""

from __future__ import annotations

import sys


def python(code: str) -> list[str]:
    """A command that runs `code` with the test's Python, so it works without `python` on PATH."""
    return [sys.executable, "-c", code]


def numbered_lines(count: int, *, every: float = 0, prefix: str = "line ") -> list[str]:
    """Print `prefix0` .. `prefix{count-1}` on stdout, one every `every` seconds (flushed) or all at once."""
    if every:
        return python(
            "import sys, time\n"
            f"for i in range({count}):\n"
            f"    print(f'{prefix}{{i}}', flush=True)\n"
            f"    time.sleep({every})\n"
        )
    return python(f"import sys\nsys.stdout.write(''.join(f'{prefix}{{i}}\\n' for i in range({count})))\n")


SLEEP_60 = ["sleep", "60"]
