"""Bad input, generated (issue 7): any bytes, encodings, byte order marks, huge lines and wrong
types give a clear problem or a correct result from the batch file readers, never a crash."""

from __future__ import annotations

import codecs
import csv
import io
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from producer.batch_files import FORMATS, BatchFile
from producer.enqueueing import BatchLine, LineProblem, request_or_problems
from shared.errors import InputError
from shared.request_model import GenerationRequest, parameter_names

MAX_LINE_BYTES = 2048
SETTINGS = settings(max_examples=150, deadline=None)

line_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x0b\x0c\x1c\x1d\x1e"
                  "\x85\u2028\u2029"),
    max_size=60,
)  # fmt: skip
"""Text of one line: no character that ends a line, no lone surrogate (not encodable)."""
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=8,
)  # fmt: skip


def entries_of(content: bytes, file_format: str) -> Iterator[BatchLine | LineProblem]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "batch"
        path.write_bytes(content)
        batch_file = BatchFile(path, file_format, max_file_bytes=10**7,
                               max_line_bytes=MAX_LINE_BYTES)  # fmt: skip
        yield from batch_file.entries()


def check_entries(content: bytes, file_format: str) -> list[BatchLine | LineProblem]:
    """The readers' contract: entries in line order, each a line or a problem with a reason,
    and validation of every line gives a request or named problems; else an InputError."""
    try:
        entries = list(entries_of(content, file_format))
    except InputError as refused:
        assert str(refused)
        return []
    lines = [entry.line for entry in entries]
    assert lines == sorted(lines) and all(n >= 1 for n in lines)
    for entry in entries:
        if isinstance(entry, LineProblem):
            assert entry.reason
        else:
            verdict = request_or_problems(entry.params, {})
            assert isinstance(verdict, GenerationRequest) or all(why for _, why in verdict)
    return entries


@SETTINGS
@given(st.binary(max_size=3000), st.sampled_from(FORMATS))
def test_any_bytes_give_lines_problems_or_a_clear_refusal(content, file_format):
    check_entries(content, file_format)


@SETTINGS
@given(st.lists(line_text, max_size=30), st.sampled_from(FORMATS),
       st.sampled_from([b"", codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF32_BE]),
       st.sampled_from(["\n", "\r\n"]))  # fmt: skip
def test_any_text_with_any_bom_and_line_ending_never_crashes(lines, file_format, bom, ending):
    check_entries(bom + ending.join(lines).encode(), file_format)


@SETTINGS
@given(st.lists(line_text.filter(lambda t: t.strip()), max_size=30))
def test_text_files_keep_every_prompt_exactly(prompts):
    entries = check_entries("\n".join(prompts).encode() + b"\n", "text")
    assert entries == [BatchLine(n, {"prompt": p}) for n, p in enumerate(prompts, start=1)]


@SETTINGS
@given(st.lists(st.dictionaries(st.sampled_from(parameter_names()), json_values, max_size=4),
                max_size=20))  # fmt: skip
def test_jsonl_objects_of_any_types_come_back_as_written(objects):
    content = "".join(json.dumps(obj) + "\n" for obj in objects).encode()
    assert check_entries(content, "jsonl") == [
        BatchLine(n, obj) for n, obj in enumerate(objects, start=1)
    ]


@SETTINGS
@given(st.lists(st.lists(st.text(max_size=15).filter(lambda t: "\r" not in t and "\x00" not in t),
                         min_size=2, max_size=2), max_size=20))  # fmt: skip
def test_csv_rows_written_by_a_csv_writer_read_back_cell_for_cell(rows):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["prompt", "negative_prompt"])
    writer.writerows(rows)
    entries = check_entries(out.getvalue().encode(), "csv")
    expected = [
        {name: cell for name, cell in zip(["prompt", "negative_prompt"], row, strict=True)
         if cell.strip()}
        for row in rows if any(cell.strip() for cell in row)
    ]  # fmt: skip
    assert [entry.params for entry in entries if isinstance(entry, BatchLine)] == expected


@SETTINGS
@given(st.integers(min_value=MAX_LINE_BYTES + 1, max_value=MAX_LINE_BYTES * 40),
       st.sampled_from(FORMATS))  # fmt: skip
def test_a_huge_line_is_one_problem_and_the_next_line_is_still_read(size, file_format):
    good = {"jsonl": b'{"prompt": "next"}', "csv": b"next", "text": b"next"}[file_format]
    head = b"prompt\n" if file_format == "csv" else b""
    entries = check_entries(head + b"y" * size + b"\n" + good + b"\n", file_format)
    offset = 1 if file_format == "csv" else 0
    assert entries == [
        LineProblem(1 + offset, f"longer than {MAX_LINE_BYTES:,} bytes (SEGQ_MAX_LINE_BYTES)"),
        BatchLine(2 + offset, {"prompt": "next"}),
    ]
