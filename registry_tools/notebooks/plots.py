"""The notebooks' figures: each function takes plain library data and returns a Figure.

Figures are built with `matplotlib.figure.Figure`, not `pyplot`: no global figure registry,
nothing the inline backend would display a second time, safe in a worker thread, and PNG
output through Agg whatever backend the kernel has.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

SIZE = (6.4, 3.4)
DPI = 96


def _figure(title: str) -> tuple[Figure, object]:
    fig = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=11)
    return fig, ax


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG (no timestamp metadata, so unchanged data gives identical bytes)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def nodes_per_page(pages: Mapping[int, int]) -> Figure:
    """Phase 1: how many nodes each listing page returned (a short page is the last one)."""
    fig, ax = _figure("Nodes per listing page")
    numbers = sorted(pages)
    ax.bar([str(n) for n in numbers], [pages[n] for n in numbers], color="tab:blue")
    ax.set_xlabel("page")
    ax.set_ylabel("nodes")
    return fig


def versions_per_package(counts: Sequence[int]) -> Figure:
    """Phase 2: distribution of the number of versions per package."""
    fig, ax = _figure("Versions per package")
    top = max(counts, default=0)
    ax.hist(counts, bins=range(0, top + 2), align="left", color="tab:green", rwidth=0.85)
    ax.set_xlabel("versions")
    ax.set_ylabel("packages")
    return fig


def metadata_coverage(coverage: Mapping[str, int]) -> Figure:
    """Phase 3: versions by metadata state (with nodes, answered empty, not fetched)."""
    fig, ax = _figure("Metadata coverage (versions)")
    labels = list(coverage)
    bars = ax.barh(labels, [coverage[label] for label in labels], color="tab:purple")
    ax.bar_label(bars, padding=3)
    ax.invert_yaxis()
    ax.set_xlabel("versions")
    return fig


def requests_over_time(timeline: Sequence[tuple[float, str]]) -> Figure:
    """Any phase: cumulative requests, retries and failures against seconds since start."""
    fig, ax = _figure("Requests and retries over time")
    for kind, colour in (("request", "tab:blue"), ("retry", "tab:orange"), ("failure", "tab:red")):
        times = [t for t, event in timeline if event == kind]
        if times:
            ax.step(times, range(1, len(times) + 1), where="post", label=kind, color=colour)
    ax.set_xlabel("seconds since start")
    ax.set_xlim(left=0)
    ax.set_ylabel("cumulative count")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if timeline:
        ax.legend(loc="upper left")
    return fig


def collisions(offers: Mapping[str, int], top: int = 15) -> Figure:
    """Mappings: node types offered by several packages, most contested first."""
    fig, ax = _figure(f"Node types offered by several packages (top {top})")
    ranked = sorted(offers.items(), key=lambda item: (-item[1], item[0]))[:top]
    bars = ax.barh([name for name, _ in ranked], [n for _, n in ranked], color="tab:red")
    ax.bar_label(bars, padding=3)
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("packages")
    return fig


def signature_counts(counts: Sequence[int]) -> Figure:
    """Mappings: how many distinct input signatures each node type has."""
    fig, ax = _figure("Signatures per node type")
    top = max(counts, default=0)
    ax.hist(counts, bins=range(1, top + 2), align="left", color="tab:cyan", rwidth=0.85)
    ax.set_xlabel("signatures")
    ax.set_ylabel("node types")
    ax.set_yscale("log")
    return fig


def candidates_per_node(candidates: Mapping[str, int]) -> Figure:
    """Resolution: candidate packages per workflow node type (0 = unresolved)."""
    fig, ax = _figure("Candidate packages per workflow node")
    names = list(candidates)
    colours = ["tab:gray" if candidates[n] == 0 else "tab:blue" for n in names]
    bars = ax.barh(names, [candidates[n] for n in names], color=colours)
    ax.bar_label(bars, padding=3)
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("candidate packages")
    return fig
