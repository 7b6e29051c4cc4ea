"""The programs in rlhf/bin: each explains every option in its --help."""

import argparse
import importlib
import pkgutil

import pytest

import rlhf.bin

PROGRAMS = sorted(m.name for m in pkgutil.iter_modules(rlhf.bin.__path__))


@pytest.mark.parametrize("name", PROGRAMS)
@pytest.mark.filterwarnings("ignore:Unable to enable fault handler")  # torchrun's @record under capsys
def test_every_option_has_a_sentence_of_help(name, monkeypatch, capsys):
    parsers = []

    def keep_parser(parser, *args, **kwargs):
        parsers.append(parser)
        raise SystemExit(0)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", keep_parser)
    with pytest.raises(SystemExit):
        importlib.import_module(f"rlhf.bin.{name}").main([])
    (parser,) = parsers
    assert parser.description and parser.description.strip()
    for action in parser._actions:
        if not isinstance(action, argparse._HelpAction):
            assert action.help and len(action.help.split()) >= 3, (name, action.dest, action.help)
    parser.format_help()  # every help string formats (a stray % would raise here)
