"""Every vetted component in the default catalog is implemented, registered and priced, and its
schemas hold together."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator

from nux_kernel.catalog import CatalogEntry, load_catalog
from nux_runtime.components.base import Component
from nux_runtime.registry import available, load_component

CATALOG = load_catalog()
ENTRIES = sorted(CATALOG.components.values(), key=lambda e: e.id)
LLMS = {"llm.local/gemma-3-270m", "llm.openai", "llm.langchain"}


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.id)
def test_entry_is_implemented_and_registered(entry: CatalogEntry) -> None:
    assert entry.implementation in available()
    assert issubclass(load_component(entry.implementation), Component)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.id)
def test_defaults_lie_inside_the_vetted_ranges(entry: CatalogEntry) -> None:
    for name, schema in entry.params.items():
        if "default" in schema:
            Draft202012Validator(schema).validate(schema["default"])
        assert schema.get("description") or schema.get("type") or schema.get("oneOf"), name
    if entry.output:
        Draft202012Validator.check_schema(entry.output)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.id)
def test_every_entry_has_a_price_and_a_vetting_record(entry: CatalogEntry) -> None:
    cost = entry.cost
    assert cost.replica_hour > 0 or cost.input_per_1k > 0 or cost.per_call > 0
    assert entry.vetting.owner and entry.vetting.date and entry.vetting.egress


def test_language_models_stream_and_answer_text() -> None:
    for component_id in LLMS:
        entry = CATALOG.components[component_id]
        assert entry.streaming, component_id
        assert entry.output == {"type": "string"}, component_id
        assert hasattr(load_component(entry.implementation), "stream"), component_id


def test_hosted_models_are_priced_per_token_and_local_ones_per_replica_hour() -> None:
    local = CATALOG.components["llm.local/gemma-3-270m"].cost
    hosted = CATALOG.components["llm.openai"].cost
    assert local.input_per_1k == local.output_per_1k == 0 and local.replica_hour > 0
    assert hosted.input_per_1k > 0 and hosted.output_per_1k > hosted.input_per_1k
    # one hosted call of 1000 tokens in and 200 out, 1 s of client replica
    assert hosted.cost(1000, 200, 1.0) == pytest.approx(0.00015 + 0.2 * 0.0006 + 0.012 / 3600)
