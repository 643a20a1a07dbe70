"""``mgnas spaces``: every registered space listed with its labels, size and the commands that can search it."""

from __future__ import annotations

import json
import math

from mgnas.search_spaces import ConvGroupsSpace, get_space, list_spaces

import mgnas.cli as cli


def test_spaces_json_lists_every_space_with_its_labels(capsys):
    assert cli.main(["spaces", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list_spaces()
    for r in rows:
        space = get_space(r["name"])
        assert [d["label"] for d in r["dimensions"]] == space.labels()
        assert r["size"] == math.prod(len(d["choices"]) for d in r["dimensions"]) == space.size()
        assert ("nni-nas" in r["strategies"]) == isinstance(space, ConvGroupsSpace)
        assert "study" in r["strategies"]


def test_one_space_shows_every_label(capsys):
    assert cli.main(["spaces", "mgic_resnet56"]) == 0
    out = capsys.readouterr().out
    for label in get_space("mgic_resnet56").labels():
        assert label in out


def test_unknown_pattern_is_one_line_exit_2(capsys):
    assert cli.main(["spaces", "nothing-like-this"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no search space matches" in err[0]
