"""Every figure chapter 1 quotes rather than measures, with the source it comes from.

Nothing here is measured by this repository and nothing here is used as a stand-in for a measurement:
a quoted figure is printed beside the measured one, labelled with its id. Prices are assumptions of
ours and say so; the command line overrides them.
"""

from __future__ import annotations

from dataclasses import dataclass

CLAIM, PUBLISHED, ASSUMPTION = "claim quoted by the book", "published figure", "assumption (this repository)"


@dataclass(frozen=True)
class Source:
    id: str
    figure: str
    kind: str  # CLAIM | PUBLISHED | ASSUMPTION
    source: str
    sections: str  # the chapter 1 sections that quote it


SOURCES: tuple[Source, ...] = (
    Source("toast_100x", "an AI customer-service agent with about 100x ROI (Toast)", CLAIM,
           "the book's opening case (1.1); the company's figure, not reproduced here "
           "(appendix C's roi_cases recomputes it from measured tok/s)", "1.1"),
    Source("ark_training_vs_inference", "AI training spend about $100B vs inference about $1.4T", CLAIM,
           "ARK Invest, Big Ideas 2026, as quoted by the book; not checked here", "1.2.1"),
    Source("ark_demand", "inference cost down ~99% lets demand grow faster than price falls", CLAIM,
           "ARK Invest, Big Ideas 2026, as quoted by the book; not checked here", "1.2.3"),
    Source("ark_300x", "about 300x inference efficiency gain, 2018-2023", CLAIM,
           "ARK Invest, Big Ideas 2026, as quoted by the book; not checked here", "1.3.1"),
    Source("ark_86pct", "about 86% further cost decline still possible", CLAIM,
           "ARK Invest, Big Ideas 2026, as quoted by the book; not checked here", "1.3.2"),
    Source("a16z_llmflation", "price of a given LLM capability falls about 10x per year", PUBLISHED,
           "G. Appenzeller, 'Welcome to LLMflation - LLM inference cost is going down fast', "
           "Andreessen Horowitz, Nov 2024", "1.2.3, 1.3.1"),
    Source("epoch_price_trends", "price at constant benchmark performance fell 9x-900x per year, by task",
           PUBLISHED, "Epoch AI, 'LLM inference prices have fallen rapidly but unequally across tasks', "
           "Mar 2025", "1.2.3, 1.3.1"),
    Source("price_cpu_vm", "$0.10 per hour for a 2-vCPU VM like the reference machine", ASSUMPTION,
           "order of magnitude of on-demand 2-vCPU cloud VMs; pass --price-per-hour", "1.2.1-1.2.3"),
    Source("price_gpu", "$2.00 per hour for one datacenter GPU on demand", ASSUMPTION,
           "order of magnitude of on-demand single-GPU cloud instances; pass --price-per-hour "
           "when the report was measured on a GPU", "1.2.1-1.2.3"),
)

BY_ID = {s.id: s for s in SOURCES}


def source_rows() -> list[dict[str, str]]:
    return [{"id": s.id, "figure": s.figure, "kind": s.kind, "source": s.source, "used in": s.sections}
            for s in SOURCES]
