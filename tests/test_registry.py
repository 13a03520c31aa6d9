"""The sampler registry: names, 'module:Class' strings, and third-party entry points."""

from __future__ import annotations

import sys
import textwrap

import pytest

import sgmcmc
from sgmcmc import registry
from sgmcmc.registry import UnknownSamplerError
from sgmcmc.testing import check_sampler, list_checks

#: the built-in samplers: those the modules of the sgmcmc package registered on import
BUILTINS = sorted(name for name, cls in registry._REGISTRY.items() if cls.__module__.startswith("sgmcmc."))


@pytest.fixture
def clean_registry(monkeypatch):
    """A private copy of the registry, so registrations in a test do not leak."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    return registry._REGISTRY


def test_builtins_are_available_and_resolve_to_their_classes():
    names = sgmcmc.available()
    assert names == sorted(names)
    assert set(BUILTINS) <= set(names)
    # the five documented ones, with their classes as attributes of the package
    expected = {"sgd": sgmcmc.SGD, "sgld": sgmcmc.SGLD, "psgld": sgmcmc.PSGLD, "sghmc": sgmcmc.SGHMC,
                "underdamped": sgmcmc.UnderdampedLangevin}
    for name, cls in expected.items():
        assert sgmcmc.get(name) is cls
        assert cls.name == name


def test_every_sampler_module_of_the_package_is_imported_and_registers_a_sampler():
    import pkgutil

    modules = {m.name for m in pkgutil.iter_modules(sgmcmc.__path__)
               if not m.name.startswith("_") and m.name not in sgmcmc._NOT_SAMPLERS}
    assert modules == {cls.__module__.split(".")[1] for cls in map(sgmcmc.get, BUILTINS)}
    assert not {"base", "registry", "diagnostics", "testing"} & modules


def test_a_new_builtin_module_is_discovered_without_touching_anything_else(clean_registry, tmp_path, monkeypatch):
    (tmp_path / "zz_discovered.py").write_text(textwrap.dedent("""
        from .base import Sampler
        from .registry import register

        @register("zz-discovered")
        class Discovered(Sampler):
            def _update(self, group, params, grads):
                pass
    """))
    (tmp_path / "_zz_private.py").write_text("raise AssertionError('a private module is not a sampler')\n")
    monkeypatch.setattr(sgmcmc, "__path__", [*sgmcmc.__path__, str(tmp_path)])
    try:
        sgmcmc._import_builtins()
        assert "zz-discovered" in sgmcmc.available()
        assert sgmcmc.get("zz-discovered").__module__ == "sgmcmc.zz_discovered"
    finally:
        sys.modules.pop("sgmcmc.zz_discovered", None)
        vars(sgmcmc).pop("zz_discovered", None)


def test_unknown_name_lists_the_valid_names():
    with pytest.raises(UnknownSamplerError) as info:
        sgmcmc.get("sgdl")
    msg = str(info.value)
    assert "'sgdl'" in msg
    for name in BUILTINS:
        assert name in msg
    assert "module:Class" in msg
    assert isinstance(info.value, ValueError)
    with pytest.raises(UnknownSamplerError, match="valid: .*sgld"):
        sgmcmc.get(3)


def test_register_get_available(clean_registry):
    @sgmcmc.register("my-sgld")
    class MySGLD(sgmcmc.SGLD):
        pass

    assert sgmcmc.get("my-sgld") is MySGLD
    assert "my-sgld" in sgmcmc.available()
    assert MySGLD.name == "my-sgld"
    # re-registering the same class (a module reload) is fine; another class under the name is not
    sgmcmc.register("my-sgld")(MySGLD)
    with pytest.raises(ValueError, match="already registered"):
        @sgmcmc.register("my-sgld")
        class Other(sgmcmc.SGLD):
            pass


def test_register_rejects_bad_names_and_non_samplers(clean_registry):
    with pytest.raises(ValueError, match="without ':'"):
        sgmcmc.register("a:b")
    with pytest.raises(ValueError):
        sgmcmc.register("")
    with pytest.raises(TypeError, match="subclass of sgmcmc.Sampler"):
        @sgmcmc.register("not-a-sampler")
        class NotOne:
            pass
    assert "not-a-sampler" not in sgmcmc.available()


def test_module_class_strings():
    from tests.plugin_sampler import LeimkuhlerMatthews

    assert sgmcmc.get("tests.plugin_sampler:LeimkuhlerMatthews") is LeimkuhlerMatthews
    assert sgmcmc.get("sgmcmc.sgld:SGLD") is sgmcmc.SGLD
    # the plugin did not register itself
    assert "tests.plugin_sampler:LeimkuhlerMatthews" not in sgmcmc.available()


@pytest.mark.parametrize(
    "spec, match",
    [
        ("tests.plugin_sampler:NotASampler", "not a subclass of sgmcmc.Sampler"),
        ("tests.plugin_sampler:Missing", "has no attribute 'Missing'"),
        ("no_such_module_sgmcmc_xyz:Foo", "cannot import module 'no_such_module_sgmcmc_xyz'"),
        ("tests.plugin_sampler:", "not of the form 'module:Class'"),
        (":Foo", "not of the form 'module:Class'"),
        ("math:pi", "not a subclass of sgmcmc.Sampler"),
    ],
)
def test_bad_module_class_strings_are_rejected(spec, match):
    with pytest.raises(UnknownSamplerError, match=match):
        sgmcmc.get(spec)


def test_plugin_sampler_by_path_runs_through_the_exact_checks():
    results = check_sampler("tests.plugin_sampler:LeimkuhlerMatthews", checks=list_checks(statistical=False))
    assert all(r.passed for r in results)


# ---------------------------------------------------------------------- entry points
FAKE_MODULE = "fake_sgmcmc_plugin_mod"


@pytest.fixture
def fake_distribution(tmp_path, monkeypatch):
    """An installed distribution 'fake-plugin' exposing sampler 'fake' in the group sgmcmc.samplers."""
    dist = tmp_path / "fake_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        f"[sgmcmc.samplers]\nfake = {FAKE_MODULE}:FakeSGLD\nbroken = {FAKE_MODULE}:DoesNotExist\n"
    )
    (tmp_path / f"{FAKE_MODULE}.py").write_text(textwrap.dedent("""
        import torch
        from sgmcmc import Sampler

        class FakeSGLD(Sampler):
            '''SGLD written by a third party, per parameter.'''

            def _update(self, group, params, grads):
                scale = self.noise_scale(group)
                for p, g in zip(params, grads):
                    p.add_(g, alpha=-group["lr"])
                    if scale > 0:
                        p.add_(torch.randn(p.shape, dtype=p.dtype, generator=self.generator), alpha=scale)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop(FAKE_MODULE, None)


def test_entry_point_sampler_is_available_and_loads(fake_distribution):
    assert "fake" in sgmcmc.available()
    assert "broken" in sgmcmc.available()
    cls = sgmcmc.get("fake")
    assert cls.__name__ == "FakeSGLD" and cls.__module__ == FAKE_MODULE
    assert cls.name == "fake"
    assert issubclass(cls, sgmcmc.Sampler)
    with pytest.raises(UnknownSamplerError, match="no attribute 'DoesNotExist'"):
        sgmcmc.get("broken")


def test_entry_point_sampler_passes_the_exact_checks(fake_distribution):
    results = check_sampler("fake", checks=list_checks(statistical=False))
    assert all(r.passed for r in results), [str(r) for r in results if not r.passed]


def test_entry_points_vanish_with_the_distribution(fake_distribution, monkeypatch):
    assert "fake" in sgmcmc.available()
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(fake_distribution)])
    assert "fake" not in sgmcmc.available()
    with pytest.raises(UnknownSamplerError):
        sgmcmc.get("fake")


def test_unregistered_subclass_reports_its_own_name_not_its_parents(tmp_path, monkeypatch):
    (tmp_path / "sub_sampler.py").write_text(
        "import sgmcmc\n\nclass MySGLD(sgmcmc.SGLD):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cls = sgmcmc.get("sub_sampler:MySGLD")
    assert cls.name == "sub_sampler:MySGLD"
    assert sgmcmc.get("sgld").name == "sgld"


def test_a_plugin_class_of_the_same_name_cannot_take_a_builtin_name(clean_registry):
    """Only the same class (same module and qualname: a reload) may register a taken name again."""
    SGLD = type("SGLD", (sgmcmc.Sampler,), {"__module__": "myplug", "_update": lambda self, g, p, d: None})
    with pytest.raises(ValueError, match="already registered to sgmcmc.sgld.SGLD"):
        sgmcmc.register("sgld")(SGLD)
    assert sgmcmc.get("sgld") is sgmcmc.SGLD
