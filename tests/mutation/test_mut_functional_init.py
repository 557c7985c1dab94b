"""functional/__init__.py: the names imported on first use (PEP 562 ``__getattr__``) (issue 26).

Once a name has been looked up it sits in the package's namespace and ``__getattr__`` is never called again for it;
in a process that imported the package earlier (a test run, mutmut's fork server) every name is already there. So
these tests call ``__getattr__`` itself, or remove the cached name first.
"""

import importlib

import pytest

import lightning_reasonattn.functional as F
from lightning_reasonattn import settings

HOMES = {
    "waad": "attention",
    "fai": "attention",
    "select_layers": "attention",
    "bootstrap_ci": "bootstrap",
    "coupling_counts": "coupling",
    "credit_gamma": "credit",
    "token_kind": "knockout",
    "chunked_logprobs": "logprobs",
    "preplan_tokens": "tokens",
    "RhythmTrace": "trace",
}


@pytest.mark.parametrize(("name", "module"), sorted(HOMES.items()))
def test_each_public_name_resolves_to_its_home(name, module):
    """Bug class: a public name resolving to something else (None, the moved-names fallback) than the object of the
    module it lives in."""
    home = importlib.import_module(f"lightning_reasonattn.functional.{module}")
    assert F.__getattr__(name) is getattr(home, name)


def test_every_name_in_all_resolves():
    """Bug class: a name of ``__all__`` that ``__getattr__`` cannot find."""
    for name in F.__all__:
        assert F.__getattr__(name) is not None, name


def test_a_name_is_cached_after_its_first_use(monkeypatch):
    """Bug class: the first use caching a wrong value, so that the second plain lookup differs from the first."""
    from lightning_reasonattn.functional.attention import waad

    monkeypatch.delitem(vars(F), "waad", raising=False)
    assert F.waad is waad  # through __getattr__
    assert vars(F)["waad"] is waad
    assert F.waad is waad  # the plain lookup


@pytest.mark.parametrize("module", ["attention", "coupling", "defaults", "keyed", "trace"])
def test_submodules_resolve_as_attributes(module):
    """Bug class: ``functional.coupling.within`` (a submodule reached as an attribute) broken."""
    assert F.__getattr__(module) is importlib.import_module(f"lightning_reasonattn.functional.{module}")


def test_an_unknown_name_is_an_attribute_error_naming_it():
    """Bug class: an unknown name raising something else than AttributeError (``hasattr`` and ``getattr(.., default)``
    would raise instead of answering) or an error that does not name it."""
    with pytest.raises(AttributeError, match="'no_such_name'"):
        F.__getattr__("no_such_name")
    assert not hasattr(F, "no_such_name")
    assert getattr(F, "no_such_name", 7) == 7


def test_a_moved_name_warns_and_resolves_to_its_new_home():
    """Bug class: the deprecated spelling ``functional.RhythmSettings`` no longer found (users' imports break before
    the announced removal)."""
    with pytest.warns(DeprecationWarning, match=r"lightning_reasonattn\.functional\.RhythmSettings is deprecated"):
        assert F.__getattr__("RhythmSettings") is settings.RhythmSettings
