
import pytest

from documents.inputs import discover, safe_relative_name
from documents.selection import parse_page_ranges, select_pages
from documents.writer import UnsafePath, confined, report_path


def test_page_selection():
    assert parse_page_ranges("1-3,7,10-") == [(1, 3), (7, 7), (10, None)]
    assert select_pages(12, "1-3,7,10-") == [1, 2, 3, 7, 10, 11, 12]
    assert select_pages(5, "4-9") == [4, 5]
    assert select_pages(5, None, max_pages=2) == [1, 2]
    assert select_pages(5, "2,2,1") == [1, 2]
    assert select_pages(2, "5") == []
    for bad in ("0", "3-1", "a", "1,,2", "-"):
        with pytest.raises(ValueError, match="page selection"):
            parse_page_ranges(bad)


@pytest.mark.parametrize(
    "name",
    ["../../etc/passwd", "/abs/olute.pdf", "..\\..\\win.pdf", "a/../../b.pdf", ".hidden", "C:\\x\\y.pdf", "we\x00ird\nname.pdf"],
)
def test_names_never_escape_out(tmp_path, name):
    safe = safe_relative_name(name)
    assert not safe.startswith("/") and ".." not in safe.split("/")
    target = report_path(tmp_path, safe)
    assert tmp_path.resolve() in target.parents


def test_confined_refuses_escape(tmp_path):
    with pytest.raises(UnsafePath):
        confined(tmp_path, "../outside.json")


def test_discover_dirs_globs_files_and_clashes(tmp_path):
    (tmp_path / "a" / "sub").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    for rel in ("a/one.pdf", "a/sub/two.PNG", "a/skip.txt", "b/one.pdf", "b/summary"):
        (tmp_path / rel).write_bytes(b"x")
    docs, problems = discover(
        [str(tmp_path / "a"), str(tmp_path / "b" / "*.pdf"), str(tmp_path / "b" / "summary"), str(tmp_path / "missing.pdf")],
        [".pdf", ".png"],
    )
    names = sorted(d.name for d in docs)
    # a/one.pdf (dir-relative "one.pdf") clashes with b/one.pdf: both get a stable hash suffix.
    assert len([n for n in names if n.startswith("one.pdf.")]) == 2
    assert "sub/two.PNG" in names
    assert any(n.startswith("summary.") for n in names)  # reserved name gets a suffix
    assert not any("skip" in n for n in names)
    assert [p.input for p in problems] == [str(tmp_path / "missing.pdf")]
    again, _ = discover([str(tmp_path / "b" / "*.pdf"), str(tmp_path / "a")], [".pdf", ".png"])
    assert {d.doc_id: d.name for d in again} == {d.doc_id: d.name for d in docs if "summary" not in d.name}
