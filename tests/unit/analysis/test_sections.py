"""flops_fit.analysis.sections: the typed sections of scaling_laws.json give back the file
exactly."""

from __future__ import annotations

import json

import numpy as np

from conftest import FIXTURE_V0_1_0
from flops_fit.analysis.scaling_analysis import ScalingAnalysis
from flops_fit.analysis.sections import (
    Approach1Section,
    Bootstrap,
    IsoflopSection,
    ParametricSection,
    PowerLawRecord,
    plain,
)

FIXTURE = FIXTURE_V0_1_0 / "analysis" / "scaling_laws.json"


def _data() -> dict:
    return json.loads(FIXTURE.read_text())


def test_sections_round_trip_the_fixture_exactly():
    data = _data()
    for key, cls in (("parametric", ParametricSection), ("isoflop", IsoflopSection),
                     ("approach1", Approach1Section)):
        sec = cls.from_dict(data[key])
        assert sec.to_dict() == data[key]
        assert json.dumps(sec.to_dict()) == json.dumps(data[key])  # same key order too
        assert dict(sec) == data[key] and sec == data[key]  # the mapping view


def test_analysis_round_trips_the_fixture_exactly():
    data = _data()
    analysis = ScalingAnalysis.from_json(FIXTURE)
    assert json.dumps(plain(analysis.to_dict())) == json.dumps(data)


def test_typed_fields_and_samples():
    data = _data()
    par = ParametricSection.from_dict(data["parametric"])
    assert par.E == data["parametric"]["E"] and par["alpha"] == data["parametric"]["alpha"]
    assert isinstance(par.n_opt, PowerLawRecord) and isinstance(par.bootstrap, Bootstrap)
    s = par.bootstrap.samples()
    assert s.shape == (200, 5) and par.bootstrap.columns == ["E", "A", "B", "alpha", "beta"]
    iso = IsoflopSection.from_dict(data["isoflop"])
    assert not iso.available and iso.n_opt is None and len(iso.budgets) == 2
    assert iso.budgets[0].interior is False and iso.bootstrap is None
    a1 = Approach1Section.from_dict(data["approach1"])
    assert a1.n_opt.ci_note.startswith("OLS") and a1.n_opt.n_points == 199


def test_unknown_keys_travel_in_extra():
    raw = {"coefficient": 2.0, "exponent": 0.5, "future_key": [1, 2]}
    law = PowerLawRecord.from_dict(raw)
    assert law.extra == {"future_key": [1, 2]} and law.to_dict() == raw
    assert float(law.at(4.0)) == 4.0
    assert np.allclose(law.at(np.array([1.0, 16.0])), [2.0, 8.0])


def test_bootstrap_samples_with_gaps():
    b = Bootstrap.from_dict({"samples": [[1.0, None], [2.0, 3.0]]})
    s = b.samples()
    assert s.shape == (2, 2) and np.isnan(s[0, 1])
    assert Bootstrap.from_dict({"samples": [[1.0, 2.0]]}).samples() is None  # one row
    assert Bootstrap.from_dict({"samples": None}).samples() is None
