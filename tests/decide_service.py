"""A credit decision service shaped unlike predlog's examples, with the README's one line.

``POST /v1/decide`` takes ``{"applicant": {...}}`` and answers ``{"probability": p,
"label": "approve" | "refer" | "decline"}``: no field named score or decision, a
three-way label, and a body the framework validates (a malformed one is a 422).

    uvicorn tests.decide_service:app
"""

from __future__ import annotations

import math
from typing import Literal

from fastapi import FastAPI
from pydantic import BaseModel, Field

import predlog

#: The label's cut-offs on the probability of repaying.
APPROVE_FROM = 0.7
REFER_FROM = 0.4


class Applicant(BaseModel):
    income: float = Field(ge=0)
    age: int = Field(ge=18, le=120)
    debt_ratio: float = Field(ge=0)
    employment: Literal["salaried", "self_employed", "unemployed", "retired"]
    months_at_address: int = 0


class DecideRequest(BaseModel):
    applicant: Applicant


app = FastAPI(title="credit-decisions")


def probability(applicant: Applicant) -> float:
    """A fixed logistic model: higher income and age help, debt and no job hurt."""
    z = (
        -1.0
        + 0.00003 * applicant.income
        + 0.02 * (applicant.age - 40)
        - 3.0 * applicant.debt_ratio
        - (1.5 if applicant.employment == "unemployed" else 0.0)
        + 0.005 * applicant.months_at_address
    )
    return round(1.0 / (1.0 + math.exp(-z)), 6)


@app.post("/v1/decide")
def decide(request: DecideRequest) -> dict[str, float | str]:
    p = probability(request.applicant)
    label = "approve" if p >= APPROVE_FROM else "refer" if p >= REFER_FROM else "decline"
    return {"probability": p, "label": label}


@app.get("/healthz")
def healthz() -> str:
    return "ok"


predlog.instrument(app, model_name="credit-decisions", model_version="2026.11.3")
