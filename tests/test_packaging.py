"""The wheel, as a package index would serve it, carries everything the embedded default needs."""
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_holds_the_shipped_weights_data_tables_and_spaces(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True)
    (wheel,) = tmp_path.glob("autoprune-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    # The card's top-level folders travel inside the package.
    shipped = [f"autoprune/{p.relative_to(ROOT).as_posix()}" for folder in ("latency_tables", "search_spaces")
               for p in (ROOT / folder).iterdir() if p.suffix in {".json", ".yaml"}]
    shipped += [p.relative_to(ROOT).as_posix() for p in (ROOT / "autoprune" / "assets").iterdir()
                if p.suffix in {".pt", ".npz"}]
    assert len(shipped) >= 8
    assert [p for p in shipped if p not in names] == []
    assert "autoprune/study/execution.py" in names and "autoprune/api.py" in names
