"""The README's Python example runs as printed: a user's own model class and dataset."""

import re

from conftest import REPO


def _example() -> str:
    readme = (REPO / "README.md").read_text()
    block = readme.split("<!-- python-api-example -->", 1)[1]
    return re.search(r"```python\n(.*?)```", block, re.S).group(1)


def test_readme_python_example(tmp_path, monkeypatch, capsys):
    code = _example()
    assert "class " in code and "Dataset" in code and "find_optimal" in code
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the documented example
    result, plan = namespace["result"], namespace["plan"]
    assert len(plan.runs) >= 9
    assert {r["status"] for r in result.runs.to_dict("records")} == {"completed"}
    p = result.predict(1e12)
    assert p["optimal_params"] > 0 and p["expected_loss"] > 0
    assert len(namespace["figures"]) >= 4
    assert (tmp_path / "outputs" / "convlm" / "report.html").exists()
    assert "| " in capsys.readouterr().out
    # the model and dataset are the test's (the README's), not the package's
    assert namespace["ConvLM"].__module__ == "readme_example"
