"""Batch file readers: each format read as a stream of numbered lines; every bad line is one
problem with its number (and field), whole-file problems refuse the file, nothing crashes."""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from producer.batch_files import CR_LINE_ENDS, BatchFile, Entry, format_of
from producer.commands.batch import line_problems
from producer.enqueueing import MAX_LINE_NUMBER, BatchLine, LineProblem, request_or_problems
from shared.errors import InputError

LIMITS = {"max_file_bytes": 10**7, "max_line_bytes": 4096}


def read(path: Path, file_format: str | None = None, **limits: int) -> list:
    return list(BatchFile(path, file_format, **{**LIMITS, **limits}).entries())


def write(tmp_path: Path, name: str, content: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def test_text_file_gives_one_prompt_per_line_numbered_as_in_the_file(tmp_path):
    path = write(tmp_path, "p.txt", "a red fox\n\n   \na blue whale\r\nlast line, no newline")
    assert read(path) == [
        BatchLine(1, {"prompt": "a red fox"}),
        BatchLine(4, {"prompt": "a blue whale"}),
        BatchLine(5, {"prompt": "last line, no newline"}),
    ]


def test_jsonl_lines_that_are_not_objects_are_problems_naming_the_line(tmp_path):
    content = '{"prompt": "ok", "steps": 8}\n[1, 2]\n{"prompt": \n"just a string"\n\n{}\n'
    entries = read(write(tmp_path, "p.jsonl", content))
    assert entries[0] == BatchLine(1, {"prompt": "ok", "steps": 8})
    assert [str(e) for e in entries[1:4]] == [
        "line 2: expected a JSON object of parameters, got a list",
        "line 3: not valid JSON: Expecting value (column 12)",
        "line 4: expected a JSON object of parameters, got a string",
    ]
    assert entries[4] == BatchLine(6, {})


def test_deeply_nested_json_is_a_problem_not_a_crash(tmp_path):
    entries = read(write(tmp_path, "p.jsonl", "[" * 3000 + "]" * 3000 + "\n"), max_line_bytes=8192)
    assert isinstance(entries[0], LineProblem) and entries[0].line == 1


def test_csv_header_names_parameters_and_empty_cells_mean_not_given(tmp_path):
    content = 'prompt,steps,seed\n"a cat, sitting",8,\n"two\nlines",,3\n\nx,1,2,3\n'
    entries = read(write(tmp_path, "p.csv", content))
    assert entries == [
        BatchLine(2, {"prompt": "a cat, sitting", "steps": "8"}),
        BatchLine(3, {"prompt": "two\nlines", "seed": "3"}),
        LineProblem(6, "4 cells, but the header names 3 columns"),
    ]


def test_csv_header_with_unknown_or_repeated_columns_refuses_the_file(tmp_path):
    path = write(tmp_path, "p.csv", "prompt,stepz,prompt,\nx,1,y,\n")
    with pytest.raises(InputError) as refused:
        read(path)
    assert refused.value.problems == [
        "line 1: column 2 'stepz': unknown parameter (did you mean steps?)",
        "line 1: column 3 'prompt' repeats an earlier column",
        "line 1: column 4 has no name",
    ]


def test_a_utf8_bom_is_ignored_and_a_utf16_file_is_refused_with_what_to_do(tmp_path):
    path = write(tmp_path, "bom.csv", codecs.BOM_UTF8 + b"prompt\nhello\n")
    assert read(path) == [BatchLine(2, {"prompt": "hello"})]
    wide = write(tmp_path, "wide.txt", "hello\n".encode("utf-16"))
    with pytest.raises(InputError, match=r"UTF-16.*save it as UTF-8"):
        read(wide)


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
def test_a_wide_file_without_a_byte_order_mark_is_refused_with_what_to_do(tmp_path, encoding):
    """Not a NUL character on every line, as each line of such a file read as UTF-8 says."""
    wide = write(
        tmp_path, "wide.jsonl", '{"prompt": "a cat"}\n{"prompt": "a dog"}\n'.encode(encoding)
    )
    with pytest.raises(InputError, match=r"UTF-16 or UTF-32 without a byte order mark.*UTF-8"):
        read(wide)


def test_a_nul_byte_in_a_utf8_first_line_is_that_lines_problem_only(tmp_path):
    entries = read(write(tmp_path, "p.txt", b"a c\x00t\nb dog\n"))
    assert entries == [BatchLine(1, {"prompt": "a c\x00t"}), BatchLine(2, {"prompt": "b dog"})]


def test_bad_bytes_and_overlong_lines_are_problems_and_the_rest_is_read(tmp_path):
    content = b"fine\nbad \xff byte\n" + b"x" * 5000 + b"\nafter\n"
    entries = read(write(tmp_path, "p.txt", content))
    assert entries[0] == BatchLine(1, {"prompt": "fine"})
    assert str(entries[1]).startswith("line 2: not UTF-8 text (byte 0xff at byte 5")
    assert str(entries[2]) == "line 3: longer than 4,096 bytes (SEGQ_MAX_LINE_BYTES)"
    assert entries[3] == BatchLine(4, {"prompt": "after"})


def test_an_overlong_first_line_after_a_bom_is_one_problem_and_the_numbers_hold(tmp_path):
    # Given a BOM, then a first line just over the limit once the BOM is off
    content = codecs.BOM_UTF8 + b"x" * 4097 + b"\nafter\n"
    entries = read(write(tmp_path, "p.txt", content))
    # Then it is line 1's problem, not split in two, and the next line is line 2
    assert str(entries[0]) == "line 1: longer than 4,096 bytes (SEGQ_MAX_LINE_BYTES)"
    assert entries[1:] == [BatchLine(2, {"prompt": "after"})]


def test_a_json_integer_too_long_to_convert_is_that_lines_problem(tmp_path):
    content = '{"prompt": "a", "seed": ' + "9" * 5000 + '}\n{"prompt": "b"}\n'
    entries = read(write(tmp_path, "p.jsonl", content), max_line_bytes=8192)
    assert str(entries[0]) == "line 1: a number of more than 4,300 digits"
    assert entries[1] == BatchLine(2, {"prompt": "b"})


def test_a_line_past_the_last_line_number_is_found_by_the_check_not_the_enqueue():
    past = BatchLine(MAX_LINE_NUMBER + 1, {"prompt": "a pebble"})
    assert [str(p) for p in line_problems(past, {})] == [
        f"line {MAX_LINE_NUMBER + 1}: line numbers go up to {MAX_LINE_NUMBER:,}"
    ]
    assert line_problems(BatchLine(MAX_LINE_NUMBER, {"prompt": "a pebble"}), {}) == []


def test_a_csv_row_with_a_bad_byte_is_one_problem(tmp_path):
    entries = read(write(tmp_path, "p.csv", b"prompt,steps\n\xfe,4\nok,4\n"))
    assert isinstance(entries[0], LineProblem) and entries[0].line == 2
    assert entries[1] == BatchLine(3, {"prompt": "ok", "steps": "4"})


def test_a_stray_quote_in_a_csv_is_one_problem_naming_the_lines_it_swallowed(tmp_path):
    content = 'prompt,steps\ncat,4\n"open,5\ndog,6\n"bird",7\nfish,8\n"to the end,9\nlast,1\n'
    entries = read(write(tmp_path, "p.csv", content))
    assert entries[0] == BatchLine(2, {"prompt": "cat", "steps": "4"})
    assert str(entries[1]) == (
        "line 3: not valid CSV: ',' expected after '\"', in a record that runs from here to "
        "line 5 (is a quote left open?); none of those lines was read as a job"
    )
    assert entries[2] == BatchLine(6, {"prompt": "fish", "steps": "8"})
    assert str(entries[3]).startswith("line 7: not valid CSV: unexpected end of data, in a "
                                      "record that runs from here to line 8")  # fmt: skip
    assert len(entries) == 4


def test_a_quote_in_the_middle_of_a_csv_cell_is_a_problem_not_a_guess(tmp_path):
    entries = read(write(tmp_path, "p.csv", 'prompt\n"a cat" in a hat\nsay "hi"\n'))
    assert str(entries[0]) == "line 2: not valid CSV: ',' expected after '\"'"
    assert entries[1] == BatchLine(3, {"prompt": 'say "hi"'})


def test_a_csv_header_that_cannot_be_read_refuses_the_file(tmp_path):
    path = write(tmp_path, "p.csv", b"\xe9prompt,steps\na fox,6\n")
    with pytest.raises(InputError, match=r"line 1: the CSV header cannot be read: not UTF-8"):
        read(path)


def test_a_text_file_with_cr_only_line_ends_is_a_problem_not_one_long_prompt(tmp_path):
    entries = read(write(tmp_path, "p.txt", "a red fox\rblue whale\rgreen frog\r"))
    assert [str(e) for e in entries] == [f"line 1: {CR_LINE_ENDS}"]


def test_a_file_over_the_size_limit_is_refused_before_reading(tmp_path):
    path = write(tmp_path, "big.txt", "a\n" * 100)
    with pytest.raises(InputError, match="SEGQ_MAX_FILE_BYTES"):
        BatchFile(path, None, max_file_bytes=100, max_line_bytes=4096)


def test_a_pipe_is_refused_before_reading_since_the_enqueue_pass_would_find_it_empty(tmp_path):
    fifo = tmp_path / "prompts.txt"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match=r"not a regular file \(a pipe\?\)"):
        BatchFile(fifo, None, **LIMITS)
    stdin = tmp_path / "stdin"  # /dev/stdin: no extension, yet --format is not the way out
    os.mkfifo(stdin)
    with pytest.raises(InputError, match=r"not a regular file \(a pipe\?\)"):
        BatchFile(stdin, None, **LIMITS)


@pytest.mark.parametrize(
    ("name", "given", "expected"),
    [("a.jsonl", None, "jsonl"), ("a.NDJSON", None, "jsonl"), ("a.csv", None, "csv"),
     ("a.txt", None, "text"), ("a.data", "csv", "csv")],
)  # fmt: skip
def test_format_comes_from_the_flag_else_the_extension(name, given, expected):
    assert format_of(Path(name), given) == expected


def test_an_unknown_extension_asks_for_format():
    with pytest.raises(InputError, match=re.escape("--format jsonl|csv|text")):
        format_of(Path("prompts.dat"), None)


def test_validation_names_the_field_the_value_and_a_close_parameter_name():
    problems = request_or_problems({"prompt": "x", "steps": 99, "sampeler": "euler"}, {})
    assert problems == [
        ("steps", "Input should be less than or equal to 70 (got 99)"),
        ("sampeler", "unknown parameter (did you mean sampler?)"),
    ]


def test_csv_strings_are_typed_by_the_request_model_with_defaults_under_them():
    request = request_or_problems({"prompt": " a fox ", "steps": " 9 ", "base64": "TRUE"},
                                  {"steps": 6, "seed": 3})  # fmt: skip
    assert not isinstance(request, list)
    assert (request.prompt, request.steps, request.seed, request.base64) == ("a fox", 9, 3, True)


def test_a_file_changed_between_the_check_and_the_enqueue_is_refused_before_any_line(tmp_path):
    path = write(tmp_path, "p.txt", "a red fox\na blue whale\n")
    batch_file = BatchFile(path, None, **LIMITS)
    assert len(list(batch_file.entries())) == 2  # the first pass: checked, digest taken
    with path.open("ab") as stream:  # still being written, or edited, between the passes
        stream.write(b"a line nobody checked\n")
    second = batch_file.entries()
    with pytest.raises(InputError, match="changed since it was checked; nothing"):
        next(second)


def test_a_file_growing_while_it_is_checked_is_refused(tmp_path):
    path = write(tmp_path, "p.txt", "a red fox\na blue whale\n")
    first = BatchFile(path, None, **LIMITS).entries()
    assert next(first) == BatchLine(1, {"prompt": "a red fox"})
    with path.open("ab") as stream:
        stream.write(b"appended while the first pass read\n")
    with pytest.raises(InputError, match="changed while it was checked"):
        list(first)


def second_pass_begun(tmp_path: Path) -> tuple[Path, os.stat_result, Iterator[Entry]]:
    """A 10,000-line file checked whole, and its second pass past its first line."""
    path = write(tmp_path, "p.txt", "".join(f"fox {n:05d}\n" for n in range(1, 10_001)))
    batch_file = BatchFile(path, None, **LIMITS)
    list(batch_file.entries())
    stat = path.stat()
    second = batch_file.entries()
    assert next(second) == BatchLine(1, {"prompt": "fox 00001"})
    return path, stat, second


def test_a_file_changed_in_place_during_the_enqueue_fails_before_its_last_chunk(tmp_path):
    path, stat, second = second_pass_begun(tmp_path)
    with path.open("r+b") as stream:  # same size, same time: only the digest can tell
        stream.seek(-6, os.SEEK_END)  # the last line, far past what the reader buffered
        stream.write(b"XXXXX")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(InputError, match="changed while its lines were enqueued"):
        list(second)


def test_a_file_growing_while_it_is_enqueued_fails_before_its_last_chunk(tmp_path):
    path = write(tmp_path, "p.txt", "a red fox\na blue whale\n")
    batch_file = BatchFile(path, None, **LIMITS)
    list(batch_file.entries())
    second = batch_file.entries()
    assert next(second) == BatchLine(1, {"prompt": "a red fox"})
    with path.open("ab") as stream:  # the whole file would be another batch: say so
        stream.write(b"appended while the second pass read\n")
    with pytest.raises(InputError, match="changed while its lines were enqueued"):
        list(second)


def test_a_file_edited_during_the_enqueue_yields_no_line_read_after_the_edit(tmp_path):
    """The message says the lines after the change are not in the batch: an edit seen only at
    the end (by the digest) let every full chunk read after it be enqueued, changed lines too."""
    path, stat, second = second_pass_begun(tmp_path)
    with path.open("r+b") as stream:  # an edit in place: same size, a new modification time
        stream.seek(10 * 5000)
        stream.write(b"cat")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    with pytest.raises(InputError, match="changed while its lines were enqueued"):
        next(second)
