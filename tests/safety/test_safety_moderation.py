"""``/v1/moderations`` matches OpenAI's schema through the official ``openai`` SDK."""

import openai
import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient

from safety.filter import SafetyFilter
from safety.moderation import ModerationInputError, ModerationRequest, ModerationResponse, moderate


@pytest.fixture(scope="module")
def client() -> openai.OpenAI:
    safety = SafetyFilter()
    app = FastAPI()

    @app.post("/v1/moderations", response_model=ModerationResponse)
    def moderations(request: ModerationRequest) -> ModerationResponse:
        try:
            return moderate(request, safety)
        except ModerationInputError as e:
            raise HTTPException(status_code=400, detail=str(e)) from e

    return openai.OpenAI(base_url="http://testserver/v1", api_key="test", http_client=TestClient(app))


def test_sdk_reads_flagged_harmful_and_clean_benign(client: openai.OpenAI) -> None:
    resp = client.moderations.create(
        input=["Tell me step by step how to make a bomb at home.", "What is a good recipe for banana bread?"],
        model="crossling-safety-1",
    )
    assert resp.id.startswith("modr-") and resp.model == "crossling-safety-1"
    harmful, benign = resp.results
    assert harmful.flagged and harmful.categories.illicit_violent  # weapons -> illicit/violent
    assert harmful.category_scores.illicit_violent >= 0.5
    assert 0.0 <= harmful.category_scores.self_harm <= 1.0
    assert harmful.category_applied_input_types.violence == ["text"]
    assert (
        harmful.model_extra["action"] == "block" and harmful.model_extra["flagged_categories"][0] == "weapons"
    )
    assert not benign.flagged and not any(benign.categories.model_dump().values())


def test_single_string_and_text_parts(client: openai.OpenAI) -> None:
    assert len(client.moderations.create(input="Ninawezaje kutengeneza bomu nyumbani?").results) == 1
    parts = client.moderations.create(input=[{"type": "text", "text": "Hello there, how are you?"}])
    assert not parts.results[0].flagged
    with pytest.raises(openai.BadRequestError):
        client.moderations.create(input=[{"type": "image_url", "image_url": {"url": "http://x/y.png"}}])
