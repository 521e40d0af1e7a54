"""`segq submit`'s --set values: none silently dropped."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from producer.commands.submit import submit
from producer.enqueueing import parse_assignments
from shared.errors import InputError


def test_a_parameter_set_twice_is_refused_instead_of_one_value_winning():
    with pytest.raises(InputError, match=r"--set steps is given twice \('7', '8'\)"):
        parse_assignments(["steps=7", " steps =8"])


def test_a_prompt_in_set_is_refused_as_submit_takes_it_from_prompt():
    result = CliRunner().invoke(submit, ["--prompt", "a fox", "--set", "prompt=a dog"])
    assert result.exit_code == 2 and "give the prompt with --prompt" in result.output
