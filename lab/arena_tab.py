"""The lab's Arena tab: two results of the same image side by side, recipes hidden, a vote
(left, right, tie, both bad), the recipes revealed, the next pair; the Bradley–Terry
leaderboard with its interval bars and vote counts (overall or per image kind), the voter's own
leaderboard after 30 votes, and an export of the votes and the table.

``build_arena_tab(run_state, demo)`` creates it inside ``demo`` (a ``gr.Blocks``) and wires it;
``run_state`` is the page's state holding the last run (``RunResult``), the source of
"My last run" pairs. The store is ``VoteStore.from_env()`` (made on first use, and copied to the
Hub where ``arena.hub_sync`` names a repo) unless one is given.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass
from typing import Any

import gradio as gr

import presets
from arena import hub_sync
from arena.pairs import Pair, bundled_images, next_pair, run_images
from arena.ratings import PERSONAL_MIN_VOTES, Leaderboard, leaderboard, personal_leaderboard
from arena.votes import KINDS, VoteRefused, VoteStore, write_votes
from figures import arena_figure
from lab.form import out_dir
from pipelines.errors import InputError
from pipelines.imaging import load_image

log = logging.getLogger("upscale-lab.arena")

BUNDLED, OWN_RUN = "Bundled examples", "My last run"
ALL_KINDS = "all kinds"
OUTCOME_TEXT = {"left": "left is better", "right": "right is better", "tie": "a tie", "both_bad": "both bad"}
BOARD_HEADERS = ["rank", "recipe", "rating", "95 % interval", "votes", "wins", "ties", "losses"]
INTRO = (
    "### Which looks better?\nTwo results of the same image, sides drawn at random; which levels "
    "they are is shown after your vote. Your votes are stored without your IP address or account "
    "(a salted hash of this page's session limits each pair to one vote) and rated with a "
    "Bradley–Terry fit with 95 % bootstrap intervals."
)


@dataclass(frozen=True)
class ArenaTab:
    """The tab's components by name; its handlers key their return values by these."""

    source: Any
    kind: Any
    upload: Any
    upload_name: Any
    next_btn: Any
    left: Any
    right: Any
    votes: dict[str, Any]  # outcome → its button
    reveal: Any
    board_kind: Any
    plot: Any
    board: Any
    personal: Any
    export_btn: Any
    files: Any
    pair: Any


class StoreHolder:
    """The vote store, made on first use (nothing happens at import or build)."""

    def __init__(self, store: VoteStore | None) -> None:
        self._store, self._lock = store, threading.Lock()

    def get(self) -> VoteStore:
        with self._lock:
            if self._store is None:
                self._store = VoteStore.from_env()
                hub_sync.connect(self._store)
            return self._store


def build_arena_tab(run_state: Any, demo: gr.Blocks, *, store: VoteStore | None = None) -> ArenaTab:
    """Create the Arena tab inside ``demo`` and wire its events (see the module doc); a page
    load shows a first pair and the leaderboard."""
    with gr.Tabs(elem_id="arena-tabs"), gr.Tab("Arena", elem_id="arena-tab"):
        ui = _layout()
    events = ArenaEvents(ui, StoreHolder(store))
    pair_inputs = [ui.source, ui.kind, ui.upload, ui.upload_name, run_state, ui.board_kind]
    pair_outputs = [ui.pair, ui.left, ui.right, ui.reveal, *ui.votes.values(), ui.plot, ui.board, ui.personal]
    shown: dict[str, Any] = dict(
        outputs=pair_outputs, api_visibility="private", concurrency_id="arena", concurrency_limit=4
    )
    demo.load(events.new_pair, inputs=pair_inputs, **shown)
    ui.next_btn.click(events.new_pair, inputs=pair_inputs, **shown)
    for outcome, button in ui.votes.items():
        button.click(
            events.voter(outcome),
            inputs=[ui.pair, ui.board_kind],
            outputs=[ui.pair, ui.left, ui.right, ui.reveal, *ui.votes.values(), ui.plot, ui.board, ui.personal],
            api_visibility="private",
            concurrency_id="arena",
            concurrency_limit=4,
        )
    ui.board_kind.change(
        events.board_view, inputs=[ui.board_kind], outputs=[ui.plot, ui.board, ui.personal], api_visibility="private"
    )
    ui.export_btn.click(events.export, inputs=[ui.board_kind], outputs=[ui.files], api_visibility="private")
    return ui


def _layout() -> ArenaTab:
    gr.Markdown(INTRO, elem_classes=["lab-note"])
    with gr.Row(equal_height=True):
        source = gr.Radio([BUNDLED, OWN_RUN], value=BUNDLED, label="Pairs from", elem_id="arena-source")
        kind = gr.Dropdown(list(KINDS), value=KINDS[0], label="Kind of image (your run)")
        next_btn = gr.Button("Next pair", elem_id="arena-next", scale=0, min_width=140)
    other = gr.Checkbox(label="Add another upscaler's result of the same image to your run's pairs", value=False)
    # hidden until asked for: not even in the page, so the lab's photo stays its only file input
    with gr.Row(visible=False) as other_row:
        upload = gr.Image(type="filepath", label="Its result", sources=["upload"], height=160)
        upload_name = gr.Textbox(label="Its name", placeholder="e.g. Topaz", max_lines=1, max_length=80)
    other.change(
        lambda on: gr.Row(visible=on), inputs=[other], outputs=[other_row], queue=False, api_visibility="private"
    )
    with gr.Row():
        left = gr.Image(label="Left", type="pil", format="png", interactive=False, elem_id="arena-left", height=420)
        right = gr.Image(label="Right", type="pil", format="png", interactive=False, elem_id="arena-right", height=420)
    with gr.Row():
        votes = {
            "left": gr.Button("◀ Left is better", interactive=False, elem_id="arena-vote-left"),
            "tie": gr.Button("Tie", interactive=False, elem_id="arena-vote-tie"),
            "both_bad": gr.Button("Both bad", interactive=False, elem_id="arena-vote-both-bad"),
            "right": gr.Button("Right is better ▶", interactive=False, elem_id="arena-vote-right"),
        }
    reveal = gr.Markdown(elem_id="arena-reveal", min_height=40)
    gr.Markdown("### Leaderboard")
    board_kind = gr.Dropdown([ALL_KINDS, *KINDS], value=ALL_KINDS, label="Image kind", elem_id="arena-board-kind")
    plot = gr.Plot(label="Rating with 95 % interval", elem_id="arena-plot")
    board = gr.Markdown(elem_id="arena-board")
    personal = gr.Markdown(elem_id="arena-personal")
    export_btn = gr.Button("Export votes (CSV, Parquet) and the leaderboard", size="sm", elem_id="arena-export")
    files = gr.File(label="Exports", file_count="multiple", elem_id="arena-files")
    return ArenaTab(
        source=source,
        kind=kind,
        upload=upload,
        upload_name=upload_name,
        next_btn=next_btn,
        left=left,
        right=right,
        votes=votes,
        reveal=reveal,
        board_kind=board_kind,
        plot=plot,
        board=board,
        personal=personal,
        export_btn=export_btn,
        files=files,
        pair=gr.State(None),
    )


def recipe_label(recipe: str, table: presets.LevelTable = presets.TABLE) -> str:
    """``"7"`` → ``"7 · Real-ESRGAN ×4 · off (LoRA 0)"``; an upload → its name."""
    if recipe.isdigit() and int(recipe) in table.numbers:
        return f"{recipe} · {table.get(int(recipe)).recipe}"
    return recipe.removeprefix("upload:") + " (upload)" if recipe.startswith("upload:") else recipe


def board_markdown(board: Leaderboard, title: str) -> str:
    """The leaderboard as a Markdown table (``BOARD_HEADERS``) under ``title``. (Markdown, not a
    ``gr.Dataframe``: a dataframe carries a file input of its own, which would stand beside the
    lab's photo input on the page.)"""
    lines = [
        f"**Leaderboard · {title}**",
        "",
        "| " + " | ".join(BOARD_HEADERS) + " |",
        "|---:|---|---:|---|---:|---:|---:|---:|",
    ]
    for i, r in enumerate(board.rows, 1):
        cells = (
            i,
            recipe_label(r.recipe),
            round(r.rating),
            f"{r.lower:.0f}–{r.upper:.0f}",
            r.votes,
            r.wins,
            r.ties,
            r.losses,
        )
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)


class ArenaEvents:
    """The tab's handlers (``ui``: its components; ``stores``: the vote store, made lazily)."""

    def __init__(self, ui: ArenaTab, stores: StoreHolder) -> None:
        self.ui, self.stores = ui, stores
        self._rng = random.Random()
        self._cache: dict[tuple[str, int, int], Leaderboard] = {}

    def new_pair(
        self,
        source: str,
        kind: str,
        upload: str | None,
        upload_name: str,
        run: Any,
        board_kind: str,
        request: gr.Request,
    ) -> dict[Any, Any]:
        """A new pair (recipes hidden), the vote buttons on, and the leaderboard."""
        images = bundled_images() if source == BUNDLED else self._run_images(run, kind, upload, upload_name)
        store, session = self.stores.get(), request.session_hash or ""
        pair = next_pair(images, self._rng, voted=lambda h, a, b: store.has_voted(session, h, a, b))
        ui = self.ui
        if pair is None:
            done = "You have voted on every pair here: thank you. " + (
                "Run the grid on an image of yours and pick *My last run*." if source == BUNDLED else ""
            )
            empty = {ui.pair: None, ui.left: None, ui.right: None, ui.reveal: done, **self._buttons(False)}
            return empty | self.boards(board_kind, request)
        left, right = pair.shown()
        return {
            ui.pair: pair,
            ui.left: gr.Image(value=left, label="Left"),
            ui.right: gr.Image(value=right, label="Right"),
            ui.reveal: "Which looks better? The recipes are shown after your vote.",
            **self._buttons(True),
            **self.boards(board_kind, request),
        }

    @staticmethod
    def _run_images(run: Any, kind: str, upload: str | None, name: str) -> list[Any]:
        if run is None:
            raise gr.Error("Run the grid first: its levels are the pairs of “My last run”.")
        other = None
        if upload:
            if not (name or "").strip():
                raise gr.Error("Give the other upscaler's result a name (it is shown after the vote).")
            try:
                other = (name, load_image(upload).rgb)
            except InputError as exc:
                raise gr.Error(str(exc)) from None
        try:
            return [run_images(run, kind, other)]
        except (ValueError, VoteRefused) as exc:
            raise gr.Error(str(exc)) from None

    def _buttons(self, on: bool) -> dict[Any, Any]:
        return {button: gr.Button(interactive=on) for button in self.ui.votes.values()}

    def voter(self, outcome: str) -> Any:
        def vote(pair: Pair | None, board_kind: str, request: gr.Request) -> dict[Any, Any]:
            return self.vote(outcome, pair, board_kind, request)

        vote.__name__ = f"vote_{outcome}"
        return vote

    def vote(self, outcome: str, pair: Pair | None, board_kind: str, request: gr.Request) -> dict[Any, Any]:
        """Store the vote, reveal the recipes, turn the buttons off, refresh the leaderboard. A
        refused vote (the same pair again, too fast) is a warning and changes nothing."""
        if pair is None:
            raise gr.Error("Pick *Next pair* first.")
        try:
            self.stores.get().add(
                session_id=request.session_hash or "",
                image_hash=pair.image.image_hash,
                kind=pair.image.kind,
                left=pair.left.recipe,
                right=pair.right.recipe,
                outcome=outcome,
                crop=pair.crop_text,
            )
        except VoteRefused as exc:
            gr.Warning(str(exc))
            return {}
        ui = self.ui
        reveal = (
            f"You voted **{OUTCOME_TEXT[outcome]}**. Left was **{pair.left.label}**; right was "
            f"**{pair.right.label}** ({pair.image.name}, {pair.image.kind}). *Next pair* for another."
        )
        return {
            ui.pair: None,
            ui.left: gr.Image(label=f"Left: {pair.left.label}"),
            ui.right: gr.Image(label=f"Right: {pair.right.label}"),
            ui.reveal: reveal,
            **self._buttons(False),
            **self.boards(board_kind, request),
        }

    def board_view(self, board_kind: str, request: gr.Request) -> dict[Any, Any]:
        """The image kind of the leaderboard changed."""
        return self.boards(board_kind, request)

    def boards(self, board_kind: str, request: gr.Request | None) -> dict[Any, Any]:
        """The leaderboard of ``board_kind``'s votes (plot and table) and the voter's own."""
        store = self.stores.get()
        board = self._board(store, None if board_kind == ALL_KINDS else board_kind)
        title = f"{board.votes} vote{'' if board.votes == 1 else 's'} · {board_kind}"
        rows = [(recipe_label(r.recipe), r.rating, r.lower, r.upper, r.votes) for r in board.rows]
        out = {self.ui.plot: arena_figure(rows, title=title), self.ui.board: board_markdown(board, title)}
        if request is not None and request.session_hash:
            out[self.ui.personal] = self._personal(store, request.session_hash)
        return out

    def _board(self, store: VoteStore, kind: str | None) -> Leaderboard:
        """The leaderboard, refitted only when votes were added (100 bootstrap rounds cost ~1 s)."""
        votes = store.votes(kind=kind)
        key = (kind or "", len(votes), votes[-1].id or 0 if votes else 0)
        if key not in self._cache:
            self._cache = {k: v for k, v in self._cache.items() if k[0] != key[0]}
            self._cache[key] = leaderboard(votes, kind=kind)
        return self._cache[key]

    @staticmethod
    def _personal(store: VoteStore, session: str) -> str:
        mine = store.votes(session_id=session)
        board = personal_leaderboard(mine)
        if board is None:
            return f"*Your own leaderboard appears after {PERSONAL_MIN_VOTES} votes ({len(mine)} so far).*"
        lines = [f"**Your own leaderboard** ({len(mine)} votes)", "", "| rank | recipe | rating | 95 % interval |"]
        lines.append("|---:|---|---:|---|")
        for i, r in enumerate(board.rows, 1):
            lines.append(f"| {i} | {recipe_label(r.recipe)} | {r.rating:.0f} | {r.lower:.0f}–{r.upper:.0f} |")
        return "\n".join(lines)

    def export(self, board_kind: str) -> dict[Any, Any]:
        """Every vote (CSV, Parquet) and the leaderboard shown (CSV), as downloads."""
        store = self.stores.get()
        folder = out_dir()
        paths = write_votes(store.votes(), folder)
        board = self._board(store, None if board_kind == ALL_KINDS else board_kind)
        table = board.to_csv(folder / f"leaderboard-{board_kind.replace('/', '-').replace(' ', '-')}.csv")
        return {self.ui.files: [str(paths["csv"]), str(paths["parquet"]), str(table)]}
