"""The classroom end to end (issue 10): a real server in class mode, a teacher and students in real Chromium.

A class is created in a fresh data folder through ``ClassroomService`` (what ``dlplay class`` does before
it serves), then the server starts over that folder and reopens it. The teacher signs in with the
``/teacher?key=...`` link; two students join with the code in separate browser contexts (separate
cookies: separate sessions); the teacher pushes the spiral preset as a lesson; both students load it
and train; the dashboard shows both cards live and the leaderboard ranks them by best validation
accuracy. A third context without the code gets only the join page, for pages, the API and the
websocket; a student cannot open the other's run by URL or by id; and a change to a field the lesson
locks is refused with the server's reason shown on the student's page.

Screenshots of the dashboard (1280x720, and 1920x1080 in projector mode) and of the join page and a
student's page go to test-artifacts/screenshots/classroom/.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import LOCAL_HOSTS, ROOT, VIEWPORT, _unavailable, serving
from tests.e2e.e2e_helpers import SCREENSHOTS, wait_valid

pytestmark = pytest.mark.e2e

SHOTS = SCREENSHOTS / "classroom"
TRAIN_TIMEOUT_MS = 180_000  # two students' spiral runs on a shared 2-core machine
CLASS_TITLE = "Deep learning 101"


@pytest.fixture(scope="module")
def classroom(tmp_path_factory: pytest.TempPathFactory):
    """A running server with an open class: ``{base, code, key}``."""
    if not (ROOT / "static" / "teacher.html").is_file():
        _unavailable("static/teacher.html missing: run `npm run build` in frontend/")
    from server.classroom import ClassroomService
    from server.config import Settings
    from server.security import load_secret
    from server.sessions import SessionIssuer
    from server.store import Store

    data_dir = tmp_path_factory.mktemp("dlplay-class")
    settings = Settings(data_dir=data_dir)
    store = Store(data_dir, metric_cap=settings.metric_history_points)
    try:
        klass = ClassroomService(store, SessionIssuer(load_secret(data_dir), 1), settings).create(CLASS_TITLE)
    finally:
        store.close()

    with serving(data_dir) as base:
        # the code as typed: 6 characters (the store may keep it with its dash, as shown)
        yield {"base": base, "code": klass.code.replace("-", ""), "key": klass.teacher_key,
               "log": data_dir / "server.log"}


class Watched:
    """A browser context and its page, recording console errors, uncaught exceptions and foreign requests."""

    def __init__(self, browser, viewport=VIEWPORT) -> None:
        from urllib.parse import urlparse

        self.context = browser.new_context(viewport=viewport)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.allowed: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

        def foreign(req) -> None:
            url = urlparse(req.url)
            if url.scheme not in ("data", "blob", "about") and url.hostname not in LOCAL_HOSTS:
                self.errors.append(f"request to a foreign host: {req.url}")

        self.page.on("request", foreign)
        # which request a "Failed to load resource" console error was about (the console does not say)
        self.failed: list[str] = []
        self.page.on("response", lambda r: r.status >= 400 and self.failed.append(f"{r.status} {r.url}"))

    def problems(self) -> list[str]:
        return [e for e in self.errors if not any(a in e for a in self.allowed)]

    def close(self) -> None:
        self.context.close()


def join(student: Watched, base: str, code: str, name: str) -> None:
    """Join on the join page as a student would: the code typed in lower case without the dash."""
    page = student.page
    page.goto(f"{base}/")
    page.wait_for_url("**/join*")
    page.fill("#join-code", code.lower())
    assert page.input_value("#join-code") == f"{code[:3]}-{code[3:]}"  # shown as on the board
    page.fill("#join-name", name)
    page.click("#join-submit")
    page.wait_for_function("window.__dlplay && window.__dlplay.ready", timeout=30_000)
    page.wait_for_function("window.__dlplay.socket.status === 'open'", timeout=15_000)
    page.wait_for_selector("#class-me", timeout=15_000)
    assert name in page.inner_text("#class-me")
    assert CLASS_TITLE in page.inner_text("#class-title")


def wait_card(teacher, name: str, condition: str, timeout: int = TRAIN_TIMEOUT_MS) -> None:
    """Wait until the dashboard card of ``name`` satisfies ``condition`` (JS over ``card``, the element)."""
    teacher.wait_for_function(
        f"""name => {{
          const card = [...document.querySelectorAll('.student-card')].find(c => c.querySelector('.card-name').textContent === name);
          return !!card && ({condition});
        }}""", arg=name, timeout=timeout)


# Records, per student name, every distinct step the dashboard's cards show (data-step), as they change.
_RECORD_STEPS_JS = """() => {
  window.__stepsSeen = {};
  const note = (card) => {
    const name = card.querySelector('.card-name').textContent;
    const step = Number(card.dataset.step);
    if (step > 0) (window.__stepsSeen[name] ||= new Set()).add(step);
  };
  new MutationObserver((changes) => {
    for (const c of changes) if (c.target.classList && c.target.classList.contains('student-card')) note(c.target);
  }).observe(document.querySelector('#cards'), { attributes: true, attributeFilter: ['data-step'], subtree: true });
}"""


def shoot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def test_a_class_from_join_to_leaderboard(classroom, browser):
    base, code = classroom["base"], classroom["code"]
    teacher = Watched(browser)
    ada = Watched(browser)
    bob = Watched(browser)
    stranger = Watched(browser)
    try:
        # ---- the teacher signs in with the link, and the key leaves the address bar
        tp = teacher.page
        tp.goto(f"{base}/teacher?key={classroom['key']}")
        tp.wait_for_function("window.__dlplayTeacher && window.__dlplayTeacher.ready", timeout=30_000)
        assert "key=" not in tp.url
        assert tp.inner_text("#class-code") == f"{code[:3]}-{code[3:]}"
        assert "/join" in tp.inner_text("#join-url")
        tp.wait_for_function("document.querySelector('#join-qr').naturalWidth > 0", timeout=15_000)
        tp.wait_for_selector("#feed-status[data-status=open]", timeout=15_000)
        assert "No student has joined yet" in tp.inner_text(".cards-empty")

        # ---- the join page refuses a wrong code and explains; then two students join
        ada.page.goto(f"{base}/join")
        shoot(ada.page, "join_page")
        ada.allowed.append("status of 403")  # the wrong code below: the browser logs the refused request
        wrong = "ABC234" if code != "ABC234" else "ABC235"
        ada.page.fill("#join-code", wrong)
        ada.page.fill("#join-name", "Ada")
        ada.page.click("#join-submit")
        ada.page.wait_for_selector(".join-error:not([hidden])")
        assert "does not open this class" in ada.page.inner_text(".join-error")
        assert ada.page.get_attribute("#join-code", "aria-invalid") == "true"
        shoot(ada.page, "join_page_wrong_code")
        join(ada, base, code, "Ada")
        join(bob, base, code, "Bob")
        wait_card(tp, "Ada", "true", timeout=15_000)
        wait_card(tp, "Bob", "true", timeout=15_000)

        # ---- the teacher pushes the spiral preset; the learning rate stays open, the batch size locked
        tp.wait_for_function("document.querySelectorAll('#lesson-source option').length > 0", timeout=15_000)
        assert tp.input_value("#lesson-source") == "preset:spiral_mlp"  # the form proposes the spiral
        tp.select_option("#lesson-source", "preset:spiral_mlp")
        tp.fill("#lesson-note", "Train the spiral, then try a smaller learning rate.")
        tp.click("#lesson-push")
        tp.wait_for_selector(".lesson-current:not([hidden])", timeout=15_000)
        assert "One hidden layer on the spiral" in tp.inner_text(".lesson-current")

        # ---- the students' pages show the lesson within a poll, with what is locked
        for student in (ada, bob):
            sp = student.page
            sp.wait_for_selector("#lesson-banner:not([hidden]) #use-lesson", timeout=15_000)
            assert "smaller learning rate" in sp.inner_text("#lesson-note")
            assert "Batch size" in sp.inner_text("#lesson-banner .cl-lesson-fields")
            sp.click("#use-lesson")
            sp.wait_for_function("window.__dlplay.store.experiment.name === 'One hidden layer on the spiral'")
            wait_valid(sp)

        # ---- a locked field changed: the server refuses the run and the banner says why
        bp = bob.page
        bp.evaluate("() => window.__dlplay.store.edit((doc) => { doc.train.batch_size = 64; })")
        wait_valid(bp)
        bp.click("#start")
        bp.wait_for_selector("#lesson-refusal:not([hidden])", timeout=30_000)
        refusal = bp.inner_text("#lesson-refusal")
        assert "locks train.batch_size" in refusal and "Fix:" in refusal
        bob.allowed.append("locks train.batch_size")
        bp.evaluate("() => window.__dlplay.store.undo()")
        # an open field changed is fine: Bob trains with a smaller learning rate
        bp.evaluate("() => window.__dlplay.store.edit((doc) => { doc.train.optimizer.lr = 0.003; })")
        wait_valid(bp)
        shoot(bp, "student_with_lesson")

        # ---- both train; the dashboard shows both live: each card shows its step moving
        tp.evaluate(_RECORD_STEPS_JS)
        ada.page.click("#start")
        bp.click("#start")
        tp.wait_for_function(
            "() => ['Ada', 'Bob'].every(n => (window.__stepsSeen[n] || new Set()).size >= 3)", timeout=TRAIN_TIMEOUT_MS)
        for name in ("Ada", "Bob"):
            wait_card(tp, name, "card.dataset.run !== ''")

        # ---- the teacher pauses Bob's run from his card (POST /api/class/runs/{id}/pause), then resumes it;
        # his own page follows (a few hundred of his 5,000 steps are done: far from the end)
        tp.click(".student-card:has(.card-name:text-is('Bob')) .card-pause")
        wait_card(tp, "Bob", "card.dataset.state === 'paused'", timeout=30_000)
        bp.wait_for_function("window.__dlplay.tracker.snapshot.state === 'paused'", timeout=30_000)
        tp.click(".student-card:has(.card-name:text-is('Bob')) .card-pause")  # now "Resume"
        wait_card(tp, "Bob", "card.dataset.state === 'running' || card.dataset.state === 'finished'", timeout=30_000)
        # the loss sparklines have points, and Open is offered for the run
        for name in ("Ada", "Bob"):
            wait_card(tp, name, "Number(card.querySelector('.sparkline').dataset.points) > 1")
        tp.evaluate("window.scrollTo(0, 0)")
        shoot(tp, "dashboard_1280x720")

        # ---- the leaderboard ranks them by best validation accuracy (the server's ranking)
        tp.wait_for_function(
            """() => {
              const rows = [...document.querySelectorAll('#leaderboard tbody tr[data-member]')];
              return rows.length === 2 && rows.every(r => r.querySelector('.lb-best').textContent !== '–');
            }""", timeout=TRAIN_TIMEOUT_MS)
        board = tp.evaluate("() => window.__dlplayTeacher.leaderboard()")
        accs = [row["best_val_acc"] for row in board["rows"]]
        assert sorted(accs, reverse=True) == accs, board
        shown = tp.eval_on_selector_all("#leaderboard tbody tr[data-member] .lb-name", "els => els.map(e => e.textContent)")
        assert shown == [row["name"] for row in board["rows"]]
        assert set(shown) == {"Ada", "Bob"}

        # ---- sort and filter
        tp.select_option("#sort", "best")
        names = tp.eval_on_selector_all(".student-card .card-name", "els => els.map(e => e.textContent)")
        bests = tp.eval_on_selector_all(".student-card", "els => els.map(e => Number(e.dataset.best || -1))")
        assert sorted(bests, reverse=True) == bests and set(names) == {"Ada", "Bob"}
        tp.fill("#name-filter", "bo")
        tp.wait_for_function("document.querySelectorAll('.student-card').length === 1")
        assert tp.inner_text(".student-card .card-name") == "Bob"
        tp.fill("#name-filter", "")
        tp.click("[data-filter=failed]")
        tp.wait_for_function("document.querySelectorAll('.student-card').length === 0")
        assert "No student matches" in tp.inner_text(".cards-empty")
        tp.click("[data-filter=all]")
        tp.wait_for_function("document.querySelectorAll('.student-card').length === 2")

        # ---- the published leaderboard reaches the students
        tp.click("#publish-toggle")
        ada.page.wait_for_selector("#leaderboard-btn", timeout=15_000)
        ada.page.click("#leaderboard-btn")
        ada.page.wait_for_selector("#leaderboard-dialog tr.mine", timeout=15_000)
        assert "Ada" in ada.page.inner_text("#leaderboard-dialog tr.mine")
        ada.page.click("#leaderboard-dialog .dialog-actions .btn")

        # ---- the teacher opens Ada's run read-only (what the card's Open does)
        ada_run = ada.page.evaluate("() => window.__dlplay.tracker.snapshot.runId")
        bob_run = bp.evaluate("() => window.__dlplay.tracker.snapshot.runId")
        assert ada_run and bob_run and ada_run != bob_run
        with teacher.context.expect_page() as popup:
            tp.click(f".student-card[data-run='{ada_run}'] .card-open")
        watch = popup.value
        watch.on("console", lambda m: m.type == "error" and teacher.errors.append(f"watch tab: {m.text}"))
        watch.wait_for_function("window.__dlplay && window.__dlplay.ready", timeout=30_000)
        watch.wait_for_function("document.querySelector('#watching') && document.querySelector('#watching').textContent.includes(\"Ada's run\")", timeout=15_000)
        watch.wait_for_function("Number(document.querySelector('[data-view=LossCurves]').dataset.points || 0) > 0", timeout=30_000)
        assert not watch.is_visible("#start"), "watch mode offers no Train"
        assert not watch.is_visible(".workspace > .side"), "watch mode hides the editor"
        assert "watch=1" in watch.url
        shoot(watch, "teacher_watching_a_run")
        watch.close()

        # ---- projector mode at 1920x1080: the cards fill the screen and the type is large
        tp.set_viewport_size({"width": 1920, "height": 1080})
        tp.click("#projector")
        tp.wait_for_function("document.documentElement.dataset.projector === 'true'")
        smallest = tp.evaluate("""() => Math.min(...[...document.querySelectorAll('.teacher *')]
            .filter(e => e.offsetParent !== null && e.childNodes.length && [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim()))
            .map(e => parseFloat(getComputedStyle(e).fontSize)))""")
        assert smallest >= 18, f"projector text as small as {smallest}px"
        tp.evaluate("window.scrollTo(0, 0)")
        shoot(tp, "dashboard_1920x1080_projector")
        tp.click("#theme")
        shoot(tp, "dashboard_1920x1080_projector_dark")
        tp.click("#theme")
        tp.click("#projector")
        tp.set_viewport_size(VIEWPORT)

        # ---- a student cannot open the other's run, by URL or by id
        ap = ada.page
        ap.goto(f"{base}/#run={bob_run}")
        ap.wait_for_function("window.__dlplay && window.__dlplay.ready", timeout=30_000)
        ap.wait_for_function("window.__dlplay.tracker.snapshot.runId === null", timeout=30_000)
        assert "not available" in ap.locator(".toast").first.inner_text()
        ada.allowed.append("status of 404")
        answer = ada.context.request.get(f"{base}/api/runs/{bob_run}")
        assert answer.status == 404
        own = ada.context.request.get(f"{base}/api/runs/{ada_run}")
        assert own.status == 200

        # ---- a browser without the code gets the join page and nothing else
        xp = stranger.page
        xp.goto(f"{base}/")
        assert xp.url.endswith("/join"), xp.url
        xp.wait_for_selector("#join-code")
        phone = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme="dark")
        try:
            pp = phone.new_page()
            pp.goto(f"{base}/join?code={code.lower()}")
            pp.wait_for_function("window.__dlplayJoin && window.__dlplayJoin.ready")
            assert pp.input_value("#join-code") == f"{code[:3]}-{code[3:]}"  # a link with the code fills it in
            assert pp.evaluate("document.documentElement.dataset.theme") == "dark"  # the system's choice
            shoot(pp, "join_page_phone_dark")
        finally:
            phone.close()
        xp.goto(f"{base}/teacher")
        assert "teacher link" in xp.inner_text("body")
        # the server's refusal page (server/security.py) names no icon, so Chromium asks for /favicon.ico: 404
        stranger.allowed.append("status of 404")
        for path in ("/api/runs", "/api/presets", f"/api/runs/{ada_run}", "/api/class"):
            r = stranger.context.request.get(f"{base}{path}")
            assert r.status in (401, 403), (path, r.status)
            assert r.json().get("code") in ("not_in_class", "not_teacher"), (path, r.text())
        stranger.allowed += ["status of 401", "status of 403", "WebSocket"]
        closed = xp.evaluate("""url => new Promise((resolve) => {
            const ws = new WebSocket(url);
            ws.onclose = (e) => resolve(e.code);
        })""", base.replace("http", "ws") + "/ws")
        assert closed in (4401, 1006, 1008), closed  # refused: 4401 after an accept, 1006 for a refused handshake
        # ...and the teacher's feed says why and closes: no class snapshot reaches it
        feed = xp.evaluate("""url => new Promise((resolve) => {
            const ws = new WebSocket(url);
            const got = [];
            ws.onmessage = (e) => got.push(JSON.parse(e.data).type);
            ws.onclose = (e) => resolve({ code: e.code, got });
        })""", base.replace("http", "ws") + "/ws/class")
        assert feed["code"] in (4401, 4403, 1006), feed
        assert "class_snapshot" not in feed["got"] and "class_update" not in feed["got"], feed

        # ---- a fuller class on the projector: ten more students join (by the API, each its own cookie jar)
        extra = [browser.new_context() for _ in range(10)]
        try:
            for i, ctx in enumerate(extra):
                r = ctx.request.post(f"{base}/api/class/join", data={"code": code.lower(), "name": f"Student {i + 3:02d}"},
                                     headers={"Origin": base})
                assert r.status == 201, r.text()
            tp.wait_for_function("document.querySelectorAll('.student-card').length === 12", timeout=15_000)
            tp.set_viewport_size({"width": 1920, "height": 1080})
            tp.click("#projector")
            tp.evaluate("window.scrollTo(0, 0)")
            tp.wait_for_timeout(300)  # not an assertion: the layout after the larger type, for the picture only
            shoot(tp, "dashboard_1920x1080_projector_12_students")
        finally:
            for ctx in extra:
                ctx.close()
        tp.click("#projector")  # the card actions are the teacher's own screen's
        tp.set_viewport_size(VIEWPORT)

        # ---- kick one (after a confirmation), then end the class: the students' pages say so
        tp.click(".student-card:has(.card-name:text-is('Student 12')) .card-kick")
        tp.wait_for_selector("dialog.confirm-dialog[open]")
        tp.click("#confirm-yes")
        tp.wait_for_function("document.querySelectorAll('.student-card').length === 11", timeout=15_000)
        tp.click("#end-class")
        tp.click("#confirm-yes")
        tp.wait_for_selector("#class-ended:not([hidden])", timeout=15_000)
        for student in (ada, bob):
            # their socket is told, their next request is refused: the class bar says the class ended
            student.allowed += ["status of 401", "this class has ended"]
            student.page.wait_for_function(
                "document.querySelector('#class-bar').textContent.includes('This class has ended')", timeout=30_000)
        shoot(ada.page, "student_after_the_class_ended")

        for who, ctx in (("teacher", teacher), ("ada", ada), ("bob", bob), ("stranger", stranger)):
            assert not ctx.problems(), f"{who}'s page misbehaved: {ctx.problems()[:10]} (failed requests: {ctx.failed[:10]})"
    finally:
        for ctx in (teacher, ada, bob, stranger):
            ctx.close()
