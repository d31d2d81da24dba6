"""The viewer's review panel: grade, flags and a note for the open study, saved under the session's reader.

Call it once per viewer run with the open study (anything with ``study_id`` and ``category``)::

    review_panel(ds, study, candidates=ids_in_the_current_filter)

Keyboard (:data:`SHORTCUTS`, shown in the panel): every review key holds **Alt** (Option on a Mac), so none
clashes with the viewer's own keys (arrows, PgUp/PgDn, Home/End, 1-4 window presets, c cine, +/- zoom ...),
which are plain keys active only while the viewer has focus; and Alt-keys also work while the note box has
focus. Alt+0..Alt+4 grade CT-0..CT-4, Alt+X "cannot grade", Alt+Enter saves, Alt+N saves and opens the next
study of the current filter that this reader has not reviewed. Letters that browsers use with Alt for their
menus (F, E, V, S, B, T, H, D) are avoided.

The panel is a fragment: a grade key or a flag click reruns only the panel. Drafts are kept per study in the
session, so a half-typed note survives a trip to another study or page; a save the database cannot take now is
kept too (components.review_db) and written when the database is back. Notes and names are shown as plain
text (``st.text``, table cells), never as Markdown or HTML.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st

from components import reader as reader_mod
from components import review_db, state
from components.markup import md_escape

__all__ = ["SHORTCUTS", "review_panel", "next_unreviewed", "panel_keys"]

#: (action, shortcut, what it does): the single table the buttons, the help text and the tests use.
SHORTCUTS: tuple[tuple[str, str, str], ...] = (
    ("grade:CT-0", "Alt+0", "Grade CT-0"),
    ("grade:CT-1", "Alt+1", "Grade CT-1"),
    ("grade:CT-2", "Alt+2", "Grade CT-2"),
    ("grade:CT-3", "Alt+3", "Grade CT-3"),
    ("grade:CT-4", "Alt+4", "Grade CT-4"),
    ("grade:ungradable", "Alt+X", "Cannot grade"),
    ("save", "Alt+Enter", "Save"),
    ("save_next", "Alt+N", "Save and open the next study you have not reviewed in the current filter"),
)
_SHORTCUT = {a: k for a, k, _ in SHORTCUTS}

K = "review."
_MSG = K + "message"  # (kind, text) shown once after a callback
_TOAST = K + "toast"  # a short confirmation seen wherever the page is scrolled
_MOVED = K + "_moved"  # save-and-next chose another study; cleared by the full run that shows it
_FRAGMENT_ID = K + "_fragment"


def _key_code(shortcut: str) -> str:
    """``"Alt+2"`` -> ``"Digit2"``, ``"Alt+N"`` -> ``"KeyN"``, ``"Alt+Enter"`` -> ``"Enter"`` (KeyboardEvent.code)."""
    key = shortcut.split("+")[-1]
    if key.isdigit():
        return f"Digit{key}"
    if len(key) == 1 and key.isalpha():
        return f"Key{key.upper()}"
    return key


# A review key pressed while the note box has focus: Streamlit applies a text box's value when it loses focus,
# and a keyboard shortcut alone does not take the focus away, so the note just typed would be missing from the
# save. This listener (window, capture phase: before Streamlit's shortcut handler) blurs the box first.
_KEYS_JS = """
export default function (component) {
  const codes = new Set((component.data && component.data.codes) || []);
  const onKey = (e) => {
    if (!e.altKey || e.ctrlKey || e.metaKey || !codes.has(e.code)) return;
    const el = document.activeElement;
    if (el && (el.tagName === "TEXTAREA" || el.tagName === "INPUT") && el.closest(".st-key-review-panel")) el.blur();
  };
  window.addEventListener("keydown", onKey, true);
  return () => window.removeEventListener("keydown", onKey, true);
}
"""
_KEYS_COMPONENT = st.components.v2.component("mosmed_review_keys", html="", js=_KEYS_JS)


def panel_keys(study_id: int) -> dict[str, str]:
    """Widget keys of the panel for one study (tests drive them)."""
    sid = int(study_id)
    return {
        "flags": f"{K}w.flags.{sid}",
        "note": f"{K}w.note.{sid}",
        "save": f"{K}w.save",
        "save_next": f"{K}w.save_next",
        "clear": f"{K}w.clear",
        **{f"grade:{g}": f"{K}w.grade.{g}" for g in ("CT-0", "CT-1", "CT-2", "CT-3", "CT-4", "ungradable")},
    }


def _draft_key(digest: str, sid: int) -> str:
    return f"{K}draft.{digest[:16]}.{int(sid)}"


def next_unreviewed(candidates: Sequence[int], current: int, reviewed: set[int]) -> int | None:
    """The first study after ``current`` in ``candidates`` (wrapping around) that is not in ``reviewed``."""
    seq = [int(c) for c in candidates]
    if not seq:
        return None
    start = seq.index(int(current)) + 1 if int(current) in seq else 0
    for sid in seq[start:] + seq[:start]:
        if sid != int(current) and sid not in reviewed:
            return sid
    return None


def _load_draft(store, ident, sid: int, reader, latest=None) -> dict:
    key = _draft_key(ident.digest, sid)
    if key in st.session_state:
        return st.session_state[key]
    draft = {"grade": None, "flags": [], "note": "", "saved": None, "dirty": False}
    waiting = [
        p
        for p in review_db.pending()
        if p["digest"] == ident.digest
        and p["study_id"] == sid
        and tuple(p["reader"])[:2] == (reader.kind, reader.subject)
    ]
    if waiting:
        r = waiting[-1]["review"]
        draft.update(grade=r["grade"], flags=list(r["flags"]), note=r["note"], dirty=True)
    elif latest is not None:
        mine = latest[(latest["study_id"] == sid) & (latest["reader_key"] == reader.key)]
        if not mine.empty:
            row = mine.iloc[0]
            draft.update(grade=row["grade"], flags=list(row["flags"]), note=row["note"], saved=row["updated_at"])
    st.session_state[key] = draft
    return draft


def _sync_widgets(draft: dict, keys: dict[str, str]) -> None:
    if keys["flags"] not in st.session_state:
        st.session_state[keys["flags"]] = list(draft["flags"])
    if keys["note"] not in st.session_state:
        st.session_state[keys["note"]] = draft["note"]


def _set_grade(dkey: str, grade: str) -> None:
    d = st.session_state[dkey]
    d["grade"] = grade  # idempotent: pressing a grade key twice never takes the grade away
    d["dirty"] = True


def _edited(dkey: str, keys: dict[str, str]) -> None:
    d = st.session_state[dkey]
    d["flags"] = list(st.session_state.get(keys["flags"]) or [])
    d["note"] = str(st.session_state.get(keys["note"]) or "")
    d["dirty"] = True


def _save(ctx: dict, go_next: bool, clear: bool = False) -> None:
    """Button / shortcut callback: validate, save (or keep for later), and maybe move to the next study."""
    from mosmed.reviews.errors import ReviewDatabaseError, ReviewError, ReviewInputError
    from mosmed.reviews.model import Review

    reader = reader_mod.current_reader()  # from the session, never from the page's arguments
    if reader is None:
        st.session_state[_MSG] = ("warning", "Type your name (sidebar, Reader) before saving a review.")
        return
    ident, sid, keys, dkey = ctx["ident"], ctx["sid"], ctx["keys"], ctx["dkey"]
    if reader.key != ctx["reader_key"]:
        st.session_state[_MSG] = ("warning", "The reader changed since this panel was drawn; nothing was saved.")
        return
    _edited(dkey, keys)
    d = st.session_state[dkey]
    try:
        review = Review() if clear else Review(d["grade"], tuple(d["flags"]), d["note"])
    except ReviewInputError as e:
        st.session_state[_MSG] = ("error", f"Not saved: {e}.")
        return
    store, problem = review_db.get_store()
    saved_now = False
    if store is not None:
        try:
            saved = store.save(ident, sid, reader, review, valid_ids=review_db.valid_ids(ctx["ds"]))
            saved_now = True
            d.update(saved=saved.saved_at, dirty=False, grade=review.grade, flags=list(review.flags), note=review.note)
            if clear:
                st.session_state[keys["flags"]] = []
                st.session_state[keys["note"]] = ""
            from mosmed.reviews.model import GRADE_LABELS

            what = (
                "cleared"
                if saved.action == "clear"
                else (GRADE_LABELS.get(review.grade or "", "") or "saved without a grade")
            )
            st.session_state[_MSG] = ("success", f"Study {sid}: {what} (saved {saved.saved_at:%H:%M:%S} UTC).")
            st.session_state[_TOAST] = f"Study {sid}: {what}, saved."
        except ReviewDatabaseError as e:
            problem = str(e)
        except ReviewError as e:
            st.session_state[_MSG] = ("error", f"Not saved: {e}.")
            return
    if not saved_now:
        review_db.queue(ident, sid, reader, review)
        d["dirty"] = True
        st.session_state[_MSG] = (
            "warning",
            f"Study {sid}: kept in this browser session, not yet in the database "
            f"({problem}). It is saved as soon as the database answers.",
        )
    if go_next:
        reviewed = (
            set(ctx["mine"]) | {sid} | {p["study_id"] for p in review_db.pending() if p["digest"] == ident.digest}
        )
        nxt = next_unreviewed(ctx["candidates"], sid, reviewed)
        if nxt is None:
            st.session_state[_MSG] = ("success", "Every study in the current filter has your review.")
            return
        # The viewer reads its study from the session (components.state); this click's full rerun opens it.
        st.session_state[state.VIEWER_STUDY_KEY] = int(nxt)
        st.session_state.pop(state.VIEWER_SLICE_KEY, None)
        st.session_state[_MOVED] = int(nxt)


def _key_help() -> list[tuple[str, str]]:
    """The key list shown under the panel, from :data:`SHORTCUTS` (grades folded into one entry)."""
    grades = [k for a, k, _ in SHORTCUTS if a.startswith("grade:CT-")]
    out = [(f"{grades[0]}…{grades[-1].removeprefix('Alt+')}", "grade CT-0…CT-4")] if grades else []
    for a, k, d in SHORTCUTS:
        if a.startswith("grade:CT-"):
            continue
        out.append((k, {"save_next": "save and next unreviewed"}.get(a, d.lower() if a != "save" else "save")))
    return out


def _labels() -> tuple[dict, dict]:
    from mosmed.reviews.model import FLAG_LABELS, GRADE_LABELS

    return dict(GRADE_LABELS), dict(FLAG_LABELS)


def review_panel(ds: Any, study: Any, *, candidates: Sequence[int] | None = None) -> None:
    """Draw the review panel for ``study`` (``study_id``, ``category``) of dataset ``ds``.

    Parameters
    ----------
    ds : mosmed.dataset.Dataset
        The open dataset (its registry gives the identity and the valid study ids).
    study : Study
        The open study.
    candidates : sequence of int, optional
        Study ids "save and next" walks through, in order (default: the registry's current filter, else
        every study of the dataset).
    """
    if candidates is None:
        candidates = state.current_filter_ids() or [int(i) for i in ds.registry.ids]
    st.session_state.pop(_MOVED, None)  # this full run shows the study save-and-next moved to
    with st.container(border=True, key="review-panel"):
        # The grade, flag and note widgets are a fragment (a grade key reruns only them); Save and Save-and-next
        # are outside it, so their click is one full rerun that saves and (for "next") opens the next study.
        ctx = _editor(ds, int(study.study_id), str(study.category), [int(c) for c in candidates])
        if ctx is not None:
            _actions(ctx)


@st.fragment
def _editor(ds: Any, sid: int, category: str, candidates: list[int]) -> dict | None:
    if st.session_state.pop(_MOVED, None) is not None:
        # Alt+N pressed in the note box: Streamlit may merge the note's own (fragment) rerun with the click's
        # full rerun into one fragment run; the click moved the viewer, so ask for the full run here.
        st.rerun()
    grade_labels, flag_labels = _labels()
    head, who = st.columns([3, 2], vertical_alignment="center")
    head.markdown(f"**Your review** · study {sid:04d}")
    reader = reader_mod.current_reader()
    if reader is None:
        with who:
            st.caption("Who is reviewing?")
        reader_mod.reader_box("review.w.panel_reader")
        return None
    who.caption(f"Reviewing as {md_escape(reader.label)}")
    try:
        ident = review_db.identity(ds)
    except Exception as e:  # noqa: BLE001
        st.warning(md_escape(f"This dataset cannot be identified for reviews: {e}"), icon=":material/error:")
        return None
    store, problem = review_db.get_store(ds)
    if store is not None and review_db.pending():
        done, left = review_db.flush_pending(store)
        if done:
            st.toast(f"{done} review(s) kept during the outage are now saved.", icon=":material/cloud_done:")
        if left:
            problem = left
    if problem:
        st.warning(
            md_escape(
                f"Reviews cannot be saved right now: {problem}. Viewing works; what you save "
                "is kept in this session and written when the database is back."
            ),
            icon=":material/cloud_off:",
        )
    mine: list[int] = []
    latest = None
    if store is not None:
        try:
            latest = store.latest(ident)
            mine = [int(s) for s in latest.loc[latest["reader_key"] == reader.key, "study_id"]]
        except Exception as e:  # noqa: BLE001
            st.warning(md_escape(f"Reviews cannot be read right now: {e}"), icon=":material/cloud_off:")
    keys = panel_keys(sid)
    dkey = _draft_key(ident.digest, sid)
    draft = _load_draft(store, ident, sid, reader, latest)
    _sync_widgets(draft, keys)

    grades = st.container(horizontal=True, gap="small", key="review-grades", vertical_alignment="center")
    for g in ("CT-0", "CT-1", "CT-2", "CT-3", "CT-4", "ungradable"):
        grades.button(
            grade_labels[g],
            key=keys[f"grade:{g}"],
            shortcut=_SHORTCUT[f"grade:{g}"],
            type="primary" if draft.get("grade") == g else "secondary",
            on_click=_set_grade,
            args=(dkey, g),
            help=f"Registry class: {category}" if g == category else None,
        )
    if draft.get("dirty"):
        grades.caption(":orange[unsaved changes]")
    elif draft.get("saved") is not None:
        grades.caption(f"saved {draft['saved']:%Y-%m-%d %H:%M} UTC")
    st.pills(
        "Flags",
        list(flag_labels),
        key=keys["flags"],
        selection_mode="multi",
        format_func=flag_labels.get,
        on_change=_edited,
        args=(dkey, keys),
    )
    from mosmed.reviews.model import MAX_NOTE_CHARS

    st.text_area(
        "Note (plain text)",
        key=keys["note"],
        max_chars=MAX_NOTE_CHARS,
        height=68,
        on_change=_edited,
        args=(dkey, keys),
        placeholder="What you saw; kept as typed",
    )
    others = None
    if latest is not None:
        others = latest[(latest["study_id"] == sid) & (latest["reader_key"] != reader.key)]
    return {
        "ds": ds,
        "ident": ident,
        "sid": sid,
        "keys": keys,
        "dkey": dkey,
        "reader_key": reader.key,
        "mine": mine,
        "candidates": candidates,
        "store": store,
        "others": others,
    }


def _actions(ctx: dict) -> None:
    """Save / Save and next / Clear (full reruns), the last save's message, the stored note and the history."""
    keys, sid, draft = ctx["keys"], ctx["sid"], st.session_state.get(ctx["dkey"], {})
    args = {k: v for k, v in ctx.items() if k not in ("store", "others")}
    actions = st.container(horizontal=True, gap="small", vertical_alignment="center")
    actions.button(
        "Save", key=keys["save"], shortcut=_SHORTCUT["save"], on_click=_save, args=(args, False), icon=":material/save:"
    )
    actions.button(
        "Save and next unreviewed",
        key=keys["save_next"],
        shortcut=_SHORTCUT["save_next"],
        on_click=_save,
        args=(args, True),
        type="primary",
        icon=":material/skip_next:",
    )
    actions.button(
        "Clear my review",
        key=keys["clear"],
        on_click=_save,
        args=(args, False, True),
        type="tertiary",
        disabled=draft.get("saved") is None,
    )
    left = [c for c in ctx["candidates"] if c not in set(ctx["mine"]) and c != sid]
    actions.caption(f"{len(left)} other {'study' if len(left) == 1 else 'studies'} of the filter not reviewed by you")
    toast = st.session_state.pop(_TOAST, None)
    if toast:
        st.toast(md_escape(toast), icon=":material/check_circle:")
    msg = st.session_state.pop(_MSG, None)
    if msg:
        getattr(st, msg[0])(md_escape(msg[1]))
    if draft.get("note") and not draft.get("dirty"):
        st.caption("Saved note, as stored:")
        st.text(draft["note"])  # plain text: never Markdown, never HTML
    _others_and_history(ctx["store"], ctx["ident"], sid, ctx["others"])
    st.caption(
        "Keys, all with Alt (Option on a Mac), also while typing the note: "
        + " · ".join(f"{k.removeprefix('Alt+')} {short}" for k, short in _key_help())
    )
    _KEYS_COMPONENT(key="review.keys", data={"codes": [_key_code(k) for _, k, _ in SHORTCUTS]})


def _others_and_history(store, ident, sid: int, others) -> None:
    if store is None:
        return
    try:
        hist = store.history(ident, sid)
    except Exception:  # noqa: BLE001 - shown as unavailable by the warning above
        return
    n_other = 0 if others is None else len(others)
    with st.expander(f"Other readers ({n_other}) and history ({len(hist)} saves)", expanded=False):
        import pandas as pd

        from mosmed.reviews.model import FLAG_LABELS

        def fmt(df: pd.DataFrame, when: str) -> pd.DataFrame:
            return pd.DataFrame(
                {
                    "when": df[when].dt.strftime("%Y-%m-%d %H:%M:%S UTC"),
                    "reader": [r if v else f"{r} (unverified)" for r, v in zip(df["reader"], df["verified"])],
                    "grade": df["grade"].fillna("—"),
                    "flags": [", ".join(FLAG_LABELS.get(f, f) for f in fl) for fl in df["flags"]],
                    "note": df["note"],
                    **({"action": df["action"]} if "action" in df else {}),
                }
            )

        if n_other:
            st.caption("Current reviews by other readers")
            st.dataframe(fmt(others, "updated_at"), hide_index=True, width="stretch")
        if len(hist):
            st.caption("Every save of this study, oldest first")
            st.dataframe(fmt(hist, "created_at"), hide_index=True, width="stretch")
