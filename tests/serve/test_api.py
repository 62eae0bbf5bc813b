"""The JSON API through FastAPI's test client, with the shipped model: what each endpoint
returns, every kind of bad request, and a fuzz of malformed ones."""

import json
import re
import socket
import threading

import pytest
from click.testing import CliRunner
from serve_app import shared_app

from poetry_lm.cli import main
from poetry_lm.prosody.rhyme import groups_of
from poetry_lm.serve import schemas


@pytest.fixture(scope="module")
def app():
    return shared_app()


# starlette's test client asks for httpx2; httpx, which the project installs, still works
pytestmark = pytest.mark.filterwarnings("ignore:.*httpx2")


@pytest.fixture(scope="module")
def client(app):
    from fastapi.testclient import TestClient

    return TestClient(app)


DENGGAO = (
    "风急天高猿啸哀，渚清沙白鸟飞回。无边落木萧萧下，不尽长江滚滚来。"
    "万里悲秋常作客，百年多病独登台。艰难苦恨繁霜鬓，潦倒新停浊酒杯。"
)


def post(client, path, body):
    return client.post(path, json=body)


def test_health_and_page(client):
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["model"] == "poetry_lm.pt"
    assert health["vocabulary"] == 6872 and health["batches"] >= 0
    assert health["titles"] is True  # the shipped model was trained with titles
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    # nothing from the internet: no address but the SVG namespace's name, which is never fetched
    text = page.text.replace('"http://www.w3.org/2000/svg"', "")
    assert "http://" not in text and "https://" not in text
    assert client.get("/docs").status_code == 200


def test_generate_a_rhymed_qijue(client):
    body = {"starts": ["月"], "form": "七绝", "seed": 3, "rhyme_first": False}
    r = post(client, "/api/generate", body)
    assert r.status_code == 200, r.text
    (poem,) = r.json()["poems"]
    assert poem["text"][0] == "月" and poem["form"] == "七绝"
    assert [len(line) for line in poem["lines"]] == [8] * 4
    assert [line[-1] for line in poem["lines"]] == ["，", "。", "，", "。"]
    assert len(poem["logprobs"]) == len(poem["tones"]) == len(poem["text"]) == 32
    assert all(lp <= 0 for lp in poem["logprobs"])
    assert poem["rhymes"] == [14, 30]  # the last characters of lines 2 and 4
    (group,) = poem["rhyme"]
    for i in poem["rhymes"]:
        assert group in {g.name for g in groups_of(poem["text"][i])}
        assert "平" in poem["tones"][i]
    assert post(client, "/api/generate", body).json()["poems"][0] == poem  # the seed decides
    args = [
        "generate",
        "月",
        "--form",
        "七绝",
        "--seed",
        "3",
        "--no-rhyme-first",
        "--format",
        "json",
    ]
    cli = CliRunner().invoke(main, args)
    assert json.loads(cli.output)["text"] == poem["text"]  # and writes what the CLI writes
    # left to the poem, the first line rhymes where its last character is in the group
    for seed in range(4, 12):
        reply = post(client, "/api/generate", {**body, "seed": seed, "rhyme_first": None})
        (other,) = reply.json()["poems"]
        (other_group,) = other["rhyme"]
        first = other_group in {g.name for g in groups_of(other["text"][6])}
        assert other["rhymes"] == ([6] if first else []) + [14, 30], other


def test_tones_are_on_for_a_form_unless_asked_off(client):
    body = {"starts": ["月"], "form": "七律", "n": 6, "seed": 2}
    poems = post(client, "/api/generate", body).json()["poems"]
    assert post(client, "/api/generate", {**body, "tones": True}).json()["poems"] == poems
    untoned = post(client, "/api/generate", {**body, "tones": False}).json()["poems"]

    def tone_faults(poem):  # 失粘 and 失对 are what the 平仄 rule prevents
        faults = post(client, "/api/check", {"text": poem["text"]}).json()["faults"]
        return {f["term"] for f in faults} & {"失粘", "失对"}

    assert not any(tone_faults(p) for p in poems)
    assert any(tone_faults(p) for p in untoned)
    cli = CliRunner().invoke(
        main, ["generate", "月", "--form", "七律", "--no-tones", "-n", "6", "--seed", "2",
               "--format", "json"],
    )  # fmt: skip
    assert [json.loads(line)["text"] for line in cli.output.splitlines()] == [
        p["text"] for p in untoned
    ]
    # a free poem has no pattern: false is harmless there, and writes what null writes
    free = {"starts": ["月"], "seed": 2, "max_len": 24}
    assert post(client, "/api/generate", {**free, "tones": False}).json() == (
        post(client, "/api/generate", free).json()
    )


def test_generate_options_mirror_the_cli(client):
    r = post(
        client,
        "/api/generate",
        {
            "form": "wujue",
            "acrostic": "春夏秋冬",
            "tones": True,
            "seed": 1,
            "script": "traditional",
        },
    )
    assert r.status_code == 200, r.text
    (poem,) = r.json()["poems"]
    assert [line[0] for line in poem["lines"]] == list("春夏秋冬")
    assert poem["form"] == "五絕"  # in the poem's script, as the CLI's --format json gives it
    cli = CliRunner().invoke(
        main,
        ["generate", "--form", "wujue", "--acrostic", "春夏秋冬", "--tones", "--seed", "1"]
        + ["--script", "traditional", "--format", "json"],
    )
    assert json.loads(cli.stdout)["form"] == "五絕"
    # max_len left at its default beside a form asks for nothing the form ignores
    assert post(client, "/api/generate", {"form": "五绝", "max_len": 128}).status_code == 200
    r = post(client, "/api/generate", {"starts": ["山", "水"], "n": 2, "beam": 2, "max_len": 20})
    poems = r.json()["poems"]
    assert [p["text"][0] for p in poems] == ["山", "山", "水", "水"]
    for p in poems:  # free poems: they may rhyme, the last character of a verse
        assert len(p["text"]) <= 20 and p["form"] is None
        assert all(p["text"][i + 1] in "，。？！；" for i in p["rhymes"])


def generate_together(app, client, bodies):
    """Ask /api/generate with each body at once, the batcher's window wide (so that a busy
    machine still batches them) → the responses, in order."""
    results = [None] * len(bodies)

    def ask(i):
        results[i] = post(client, "/api/generate", bodies[i])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(bodies))]
    batcher = app.state.batcher
    batcher.window, batcher.max_wait = 0.3, 1.0
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        batcher.window, batcher.max_wait = 0.015, 0.1
    return results


def test_a_seeded_poem_is_the_same_in_a_batch_with_others(app, client):
    body = {"starts": ["风"], "form": "五律", "n": 2, "seed": 11}
    alone = post(client, "/api/generate", body).json()
    batches = app.state.batcher.batches
    results = generate_together(app, client, [{**body, "seed": s} for s in [11, *range(1, 8)]])
    assert all(r.status_code == 200 for r in results)
    assert results[0].json() == alone
    assert app.state.batcher.batches - batches < 8  # some requests shared a batch


def test_the_seed_used_comes_back_and_writes_the_same_poems(client):
    body = {"starts": ["月"], "form": "五绝", "n": 2}
    first = post(client, "/api/generate", body).json()
    seed = first["seed"]  # drawn by the server, within the seed rule
    assert isinstance(seed, int) and 0 <= seed <= schemas.MAX_SEED
    assert post(client, "/api/generate", {**body, "seed": seed}).json() == first
    assert post(client, "/api/generate", {**body, "seed": 7}).json()["seed"] == 7


@pytest.fixture(scope="module")
def theme_app(tiny_theme_run):
    """The service with a tiny model trained with titles and the couplet input."""
    from poetry_lm.serve.app import create_app

    app = create_app(tiny_theme_run / "best.pt")
    yield app
    app.state.batcher.close()


def test_a_title_is_written_for_and_batched_per_poem(theme_app, tiny_theme_run):
    from fastapi.testclient import TestClient

    client = TestClient(theme_app)
    assert client.get("/healthz").json()["titles"] is True
    body = {"title": "春望", "starts": ["春"], "form": "五绝", "n": 2, "seed": 11}
    alone = post(client, "/api/generate", body)
    assert alone.status_code == 200, alone.text
    poems = alone.json()["poems"]
    assert all(len(p["text"]) == 24 and p["text"][0] == "春" for p in poems)
    assert [p["title"] for p in poems] == ["春望", "春望"]  # each poem says what it was written for
    cli = CliRunner().invoke(
        main,
        ["generate", "春", "--model", str(tiny_theme_run / "best.pt"), "--title", "春望"]
        + ["-n", "2", "--form", "五绝", "--seed", "11", "--format", "json"],
    )
    assert [json.loads(line)["text"] for line in cli.stdout.splitlines()] == [
        p["text"] for p in poems
    ]  # what the CLI writes
    untitled = post(client, "/api/generate", {**body, "title": ""}).json()["poems"]
    assert [p["logprobs"] for p in untitled] != [p["logprobs"] for p in poems]  # it was read
    assert [p["title"] for p in untitled] == [None, None]
    # beside requests of other titles and seeds, decoded together where they can be
    results = [None] * 8

    def ask(i):
        title = ["春望", "秋思", ""][i % 3]
        results[i] = post(client, "/api/generate", {**body, "title": title, "seed": 11 + i})

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    batcher = theme_app.state.batcher
    batches = batcher.batches
    batcher.window, batcher.max_wait = 0.3, 1.0  # wide, so that a busy machine still batches
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.status_code == 200 for r in results)
    assert results[0].json() == alone.json()
    assert batcher.batches - batches < 8  # some requests shared a batch


# (title as sent, as the model reads it; None: refused)
TITLES = [
    ("春" * 24 + "。", "春" * 24),  # 25 characters sent, 24 kept: no longer 422 from the API
    ("《春望》（其一）", "春望其一"),
    ("春" * 25, None),
    ("spring", None),
    ("，", None),
]


@pytest.mark.parametrize("title, read", TITLES)
def test_the_api_reads_a_title_by_the_clis_rule(theme_app, tiny_theme_run, title, read):
    """One rule, read_title: the API accepts what the CLI accepts, poem for poem and with the
    same title, and refuses what the CLI refuses (422, exit 2) with the same sentence."""
    from fastapi.testclient import TestClient

    r = post(TestClient(theme_app), "/api/generate", {"title": title, "form": "五绝", "seed": 3})
    cli = CliRunner().invoke(
        main,
        ["generate", "--model", str(tiny_theme_run / "best.pt"), "--title", title]
        + ["--form", "五绝", "--seed", "3", "--format", "json"],
    )
    if read is None:
        assert r.status_code == 422 and cli.exit_code == 2, (r.text, cli.output)
        sentence = r.json()["detail"].removeprefix("title: ")
        assert f"Invalid value for '--title': {sentence}" in cli.output, (sentence, cli.output)
    else:
        assert r.status_code == 200 and cli.exit_code == 0, (r.text, cli.output)
        (poem,), record = r.json()["poems"], json.loads(cli.stdout)
        assert poem["title"] == record["title"] == read
        assert poem["text"] == record["text"]


def test_the_title_comes_back_in_the_poems_script(theme_app):
    from fastapi.testclient import TestClient

    body = {"title": "《送别》", "starts": ["春"], "script": "traditional", "seed": 1}
    r = post(TestClient(theme_app), "/api/generate", body)
    assert r.status_code == 200, r.text
    assert r.json()["poems"][0]["title"] == "送別"  # as the CLI's --script traditional writes it


def test_no_title_is_null_in_the_api_and_the_cli_and_null_is_accepted(client):
    body = {"starts": ["春"], "form": "五绝", "seed": 3}
    sent_null = post(client, "/api/generate", {**body, "title": None})
    assert sent_null.status_code == 200, sent_null.text
    assert sent_null.json() == post(client, "/api/generate", body).json()  # null: no title
    cli = CliRunner().invoke(
        main, ["generate", "春", "--form", "五绝", "--seed", "3", "--format", "json"]
    )
    (poem,), record = sent_null.json()["poems"], json.loads(cli.stdout)
    assert poem["title"] is None and record["title"] is None
    assert poem["text"] == record["text"]


def test_a_model_from_before_titles_refuses_one_in_a_sentence(no_title_model):
    from fastapi.testclient import TestClient

    from poetry_lm.serve.app import create_app

    app = create_app(no_title_model)
    try:
        client = TestClient(app)
        assert client.get("/healthz").json()["titles"] is False
        r = post(client, "/api/generate", {"title": "春望"})
        assert r.status_code == 400 and "trained without titles" in r.json()["detail"], r.text
    finally:
        app.state.batcher.close()


def test_every_poem_holds_the_keywords_and_a_batch_keeps_each_poem_its_own(app, client):
    body = {"form": "七绝", "keywords": ["春", "雨", "归"], "n": 3, "seed": 5}
    alone = post(client, "/api/generate", body)
    assert alone.status_code == 200, alone.text
    for poem in alone.json()["poems"]:
        for word in "春雨归":
            assert any(word in line for line in poem["lines"]), poem["text"]
    # other seeds, keywords and forms decoded beside it
    others = [{**body, "seed": 6}, {**body, "keywords": ["明月"]}, {"form": "七绝"}]
    results = generate_together(app, client, [body, *others])
    assert results[0].json() == alone.json()
    assert all("明月" in p["text"] for p in results[2].json()["poems"])


def test_rewrite_keeps_the_other_lines_the_form_and_the_rhyme(client):
    r = post(client, "/api/rewrite", {"text": DENGGAO, "line": 3, "n": 4, "seed": 2})
    assert r.status_code == 200, r.text
    candidates = r.json()["candidates"]
    assert 1 <= len(candidates) <= 4
    lines = [line for line in DENGGAO.replace("。", "。|").replace("，", "，|").split("|") if line]
    for c in candidates:
        assert c["lines"][:3] == lines[:3] and c["lines"][4:] == lines[4:]
        new = c["lines"][3]
        assert new != lines[3] and len(new) == 8 and new.endswith("。")
        assert "上平声十灰" in {g.name for g in groups_of(new[-2])}  # the poem's rhyme
        assert new[-2] not in "哀回台杯"  # nor another line's rhyme (重韵)
        assert c["rhymes"] and c["form"] == "七律" and c["title"] is None
    scores = [c["score"] for c in candidates]
    assert scores == sorted(scores, reverse=True)  # likeliest whole poem first
    non_rhyming = post(client, "/api/rewrite", {"text": DENGGAO, "line": 2, "seed": 2}).json()
    for c in non_rhyming["candidates"]:
        assert "仄" in c["tones"][2 * 8 + 6]  # a line that does not rhyme ends 仄


def test_score_matches_the_cli(client):
    r = post(client, "/api/score", {"text": "白日依山尽，黄河入海流。"})
    assert r.status_code == 200
    data = r.json()
    cli = CliRunner().invoke(main, ["score", "白日依山尽，黄河入海流。", "--format", "json"])
    expected = json.loads(cli.output)
    assert data["perplexity"] == expected["perplexity"] and data["tokens"] == 13
    assert [tok for tok, _ in data["per_token"]] == [*"白日依山尽，黄河入海流。", "<eos>"]
    assert sum(n for _, n in data["per_token"]) == pytest.approx(data["surprisal"], abs=0.01)


def test_text_is_read_by_the_commands_one_rule(client):
    """Half-width marks, a BOM and spaces as the CLI reads them; a character the model knows
    (乾) is kept, not converted; a start that begins with a mark is refused."""
    half = post(client, "/api/score", {"text": "\ufeff床前明月光, 疑是地上霜."}).json()
    full = post(client, "/api/score", {"text": "床前明月光，疑是地上霜。"}).json()
    assert half["text"] == full["text"] == "床前明月光，疑是地上霜。"
    assert half["perplexity"] == full["perplexity"] and half["unknown"] == 0
    poem = post(client, "/api/generate", {"starts": ["乾"], "seed": 1}).json()["poems"][0]
    assert poem["text"][0] == "乾"
    bad = post(client, "/api/generate", {"starts": ["，"], "seed": 1})
    assert bad.status_code == 400 and "begins with" in bad.json()["detail"]


def test_check_names_faults(client):
    clean = post(client, "/api/check", {"text": DENGGAO}).json()
    assert clean["form"] == "七律" and clean["clean"] and clean["faults"] == []
    assert len(clean["chars"]) == 56
    broken = post(client, "/api/check", {"text": DENGGAO.replace("鸟飞回", "鸟飞去")}).json()
    assert [(f["term"], f["line"]) for f in broken["faults"]] == [("出韵", 2)]
    (fault,) = broken["faults"]  # its place names the character at fault, as chars count
    assert broken["lines"][fault["line"] - 1][fault["position"] - 1] == "去"
    (char,) = [c for c in broken["chars"] if (c["line"], c["position"]) == (2, fault["position"])]
    assert char["char"] == "去"


def test_convert(client):
    r = post(client, "/api/convert", {"text": "风急天高", "script": "traditional"})
    assert r.json() == {"text": "風急天高"}
    # the standard forms (OpenCC s2tw), not s2t's variants 牀, 羣, 峯
    jingyesi = "床前明月光，疑是地上霜。举头望明月，低头思故乡。群峰"
    r = post(client, "/api/convert", {"text": jingyesi, "script": "traditional"})
    assert r.json() == {"text": "床前明月光，疑是地上霜。舉頭望明月，低頭思故鄉。群峰"}
    r = post(client, "/api/convert", {"text": r.json()["text"], "script": "simplified"})
    assert r.json() == {"text": jingyesi}
    assert post(client, "/api/convert", {"text": "風急", "script": "simplified"}).json() == {
        "text": "风急"
    }


# Every kind of bad request: (path, body, status, words the message must hold)
BAD = [
    ("/api/generate", {"starts": ["龘"]}, 400, "starts: the model does not know the character"),
    ("/api/generate", {"starts": ["☃"]}, 400, "starts: the start text '☃' holds"),
    ("/api/generate", {"starts": ["春眠不觉晓，"], "form": "七绝"}, 400, "starts: the start"),
    ("/api/generate", {"form": "七绝", "acrostic": "春夏"}, 422, "acrostic: a 七绝 has 4 lines"),
    ("/api/generate", {"acrostic": "龘"}, 400, "acrostic: the model does not know"),
    ("/api/generate", {"starts": ["月"], "acrostic": "春"}, 400, "acrostic sets"),
    ("/api/generate", {"tones": True}, 422, "tones needs a form"),
    ("/api/generate", {"rhyme_first": True}, 422, "rhyme_first needs a form"),
    ("/api/generate", {"prime": "龘"}, 400, "prime: the model does not know"),
    ("/api/generate", {"title": "spring"}, 422, "title: the title 'spring' holds no Chinese"),
    ("/api/rewrite", {"text": DENGGAO, "line": 8}, 400, "line: the poem has 8 verses, so line"),
    ("/api/rewrite", {"text": "龘龘，", "line": 0}, 400, "text: the model does not know"),
    ("/api/score", {"text": "abc"}, 400, "text: the poem 'abc' holds 'a'"),
    # the CLI's words for text that is not a poem (check hello), from the same rule
    ("/api/check", {"text": "hello"}, 400, "text: the poem 'hello' holds 'h', which is not a"),
    ("/api/check", {"text": " "}, 400, "text: the poem has no Chinese characters"),
    ("/api/generate", {"n": 1000}, 422, "n: "),
    ("/api/generate", {"n": "many"}, 422, "n: "),
    ("/api/generate", {"starts": ["月"] * 17}, 422, "starts"),
    ("/api/generate", {"starts": ["月" * 33]}, 422, "at most 32"),
    ("/api/generate", {"starts": ["月"] * 16, "n": 4}, 422, "n: at most 32 poems"),
    ("/api/generate", {"n": 16, "best_of": 16}, 422, "best_of: at most 128 rows"),
    ("/api/generate", {"beam": 2, "best_of": 2}, 422, "beam: choose beam or best_of"),
    ("/api/generate", {"form": "十四行"}, 422, "unknown form"),
    ("/api/generate", {"temperature": 0}, 422, "temperature"),
    ("/api/generate", {"temperature": 100.5}, 422, "less than or equal to 100"),  # as the CLI
    ("/api/generate", {"top_p": 1.5}, 422, "top_p"),
    ("/api/generate", {"seed": -1}, 422, "seed"),
    ("/api/generate", {"seed": 2**32}, 422, "seed"),
    # mistyped fields are refused, never coerced ("3" is not 3)
    ("/api/generate", {"temperature": "nan"}, 422, "temperature: Input should be a valid number"),
    ("/api/generate", {"seed": "3"}, 422, "seed: Input should be a valid integer"),
    ("/api/generate", {"n": "2"}, 422, "n: Input should be a valid integer"),
    ("/api/generate", {"n": 2.0}, 422, "n: Input should be a valid integer"),
    ("/api/generate", {"greedy": "yes"}, 422, "greedy: Input should be a valid boolean"),
    ("/api/generate", {"rhyme": "off"}, 422, "rhyme: Input should be a valid boolean"),
    ("/api/generate", {"starts": [1]}, 422, "starts.0: Input should be a valid string"),
    ("/api/rewrite", {"text": DENGGAO, "line": "0"}, 422, "line: Input should be a valid integer"),
    # options at odds, or never read by the decoding asked for: the CLI's rules and words
    (
        "/api/generate",
        {"form": "五绝", "rhyme": False, "rhyme_first": True},
        422,
        "rhyme_first needs rhyme",
    ),
    ("/api/generate", {"greedy": True, "best_of": 4}, 422, "greedy draws the same"),
    ("/api/generate", {"greedy": True, "temperature": 0.8}, 422, "temperature has"),
    ("/api/generate", {"greedy": True, "top_k": 5}, 422, "top_k has no effect with greedy"),
    ("/api/generate", {"greedy": True, "top_p": 0.95}, 422, "top_p has no effect"),
    ("/api/generate", {"greedy": True, "beam": 2, "temperature": 1}, 422, "temperature has"),
    ("/api/generate", {"beam": 2, "top_k": 5}, 422, "top_k has no effect with beam"),
    ("/api/generate", {"script": "latin"}, 422, "script"),
    (
        "/api/generate",
        {"starts": ["明月" * 5], "max_len": 8},
        422,
        "starts: the start text '明月明月",
    ),
    (
        "/api/generate",
        {"prime": "明月" * 5, "max_len": 8},
        422,
        "prime: the prime text (10 characters) is longer than max_len",
    ),
    ("/api/generate", {"max_len": 7}, 422, "max_len: a free poem's shortest couplet may need 8"),
    ("/api/generate", {"acrostic": "春夏", "max_len": 25}, 422, "a 2-line acrostic may need 26"),
    ("/api/generate", {"acrostic": "春夏", "max_len": 26, "starts": ["月"]}, 400, "acrostic sets"),
    ("/api/generate", {"repetition_penalty": -1}, 422, "repetition_penalty"),
    ("/api/generate", {"title": "春" * 25}, 422, "title: the title has 25 characters; at most 24"),
    ("/api/generate", {"title": "。" * 97}, 422, "title: String should have at most 96"),
    ("/api/generate", {"form": "五绝", "max_len": 40}, 422, "max_len: a 五绝 has a fixed length"),
    ("/api/generate", {"form": "七律", "max_len": 40}, 422, "so max_len cannot be given"),
    ("/api/generate", {"model": "/etc/passwd"}, 422, "unknown field 'model'"),
    ("/api/generate", [1, 2], 422, "valid dictionary"),
    ("/api/score", {}, 422, "text is required"),
    ("/api/score", {"text": ""}, 422, "text"),
    ("/api/score", {"text": "月" * 401}, 422, "at most 400"),
    ("/api/rewrite", {"text": DENGGAO}, 422, "line is required"),
    ("/api/rewrite", {"text": DENGGAO, "line": -1}, 422, "line"),
    ("/api/rewrite", {"text": DENGGAO, "line": 0, "n": 9}, 422, "n: "),
    ("/api/convert", {"text": "月", "script": "klingon"}, 422, "script"),
    ("/api/generate", {"keywords": ["龘"]}, 400, "keywords: the model does not know"),
    ("/api/generate", {"keywords": ["春。"]}, 422, "keywords: the keyword '春。' must be Chinese"),
    (
        "/api/generate",
        {"form": "五绝", "keywords": ["明月照高楼上"]},
        422,
        "keywords: the keyword '明月照高楼上' has 6 characters, more than a line",
    ),
    (
        "/api/generate",
        {"form": "五绝", "acrostic": "春夏秋冬", "keywords": ["明月清风夜"]},
        400,
        "keywords: the keyword '明月清风夜' fits no line of a 五绝: the acrostic fixes",
    ),
    (  # the limit that binds is max_len's, and it is named
        "/api/generate",
        {"starts": ["月"], "max_len": 8, "keywords": ["春风明月夜"]},
        400,
        "max_len: the keyword '春风明月夜' has 5 characters, but max_len 8 leaves room",
    ),
    ("/api/generate", {"keywords": ["春"] * 7}, 422, "at most 6"),
    ("/api/generate", {"keywords": ["春 夏、秋,冬 风 花 雪"]}, 422, "keywords: at most 6 keywords"),
    ("/api/generate", {"keywords": ["春" * 13]}, 422, "keywords: the keyword '春春春"),
    (
        "/api/generate",
        {"keywords": ["春" * 13 + " 雨"]},
        422,
        "has 13 characters; a verse holds 12",
    ),
    ("/api/generate", {"keywords": [""]}, 422, "keywords: a keyword is empty ('')"),
    ("/api/generate", {"keywords": ["春", " "]}, 422, "keywords: a keyword is empty (' ')"),
]


def test_a_keywords_element_is_split_as_the_cli_splits_a_value(client):
    """ "春 雨、归" is three keywords, as --keywords "春 雨、归" is; the 12-character limit is
    each keyword's, after splitting, so spaces between keywords do not count."""
    r = post(client, "/api/generate", {"form": "七绝", "keywords": ["春 雨、归"], "seed": 1})
    assert r.status_code == 200, r.text
    assert all(word in r.json()["poems"][0]["text"] for word in "春雨归")
    many = "明月 清风 白云 青山 流水 落花"  # 6 keywords, 17 characters with the spaces
    r = post(client, "/api/generate", {"keywords": [many], "max_len": 128, "seed": 1})
    assert r.status_code == 200, r.text
    assert all(word in r.json()["poems"][0]["text"] for word in many.split())


@pytest.mark.parametrize("path, body, status, words", BAD)
def test_bad_requests_get_one_clear_message(client, path, body, status, words):
    r = post(client, path, body)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and words in detail and "Traceback" not in detail
    field = detail.split(":")[0].split()[0]
    assert not detail.startswith(f"{field}: {field} "), detail  # the field named once


def test_strict_fields_still_read_json_integers_as_numbers(client):
    """Strict types refuse "1" for a number, yet a JSON integer is one: 1 reads as 1.0. JSON's
    NaN and Infinity are numbers, refused as not finite, as the CLI refuses them."""
    body = {"starts": ["月"], "form": "五绝", "temperature": 1, "top_p": 1, "seed": 3}
    r = post(client, "/api/generate", {**body, "repetition_penalty": 0, "same_place_penalty": 2})
    assert r.status_code == 200, r.text
    assert r.json()["poems"][0]["text"].startswith("月")
    for raw, field in [('{"temperature": NaN}', "temperature"), ('{"top_p": Infinity}', "top_p")]:
        r = client.post("/api/generate", content=raw, headers={"content-type": "application/json"})
        finite = f"{field}: Input should be a finite number"
        assert (r.status_code, r.json()["detail"]) == (422, finite)


def test_check_refuses_what_the_cli_refuses_in_the_same_words(client):
    cli = CliRunner().invoke(main, ["check", "hello"])
    api = post(client, "/api/check", {"text": "hello"})
    assert cli.exit_code == 2 and api.status_code == 400
    said = cli.output.strip().splitlines()[-1].removeprefix("Error: ")
    assert "'h', which is not a Chinese character" in said
    assert api.json()["detail"] == f"text: {said}"


def test_bad_bodies(client):
    r = client.post(
        "/api/generate", content="{not json", headers={"content-type": "application/json"}
    )
    assert (r.status_code, r.json()["detail"]) == (422, "the body is not valid JSON")
    r = client.post("/api/generate", content="{}", headers={"content-type": "text/plain"})
    assert r.status_code == 415 and "Content-Type: application/json" in r.json()["detail"]
    big = b'{"text": "' + b"a" * (10 * 2**20) + b'"}'
    r = client.post("/api/score", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "larger than 65536 bytes" in r.json()["detail"]

    def chunks():  # no Content-Length: the limit holds while the body is read
        for _ in range(100):
            yield b"x" * 1024

    r = client.post("/api/score", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert client.get("/api/nothing").status_code == 404
    assert client.get("/api/generate").status_code == 405


def test_a_slow_request_is_cut_off_and_the_server_carries_on(app, client):
    app.state.timeout = 1e-4
    try:
        r = post(client, "/api/generate", {"form": "七律", "n": 8})
    finally:
        app.state.timeout = 20.0
    assert r.status_code == 408 and "cut off" in r.json()["detail"]
    assert post(client, "/api/generate", {"form": "五绝"}).status_code == 200


def test_a_full_queue_answers_429(app, client):
    app.state.batcher.max_waiting = 0
    try:
        r = post(client, "/api/generate", {})
    finally:
        app.state.batcher.max_waiting = 4096
    assert r.status_code == 429 and "try again" in r.json()["detail"]


def test_only_the_projects_errors_are_the_clients_fault(app, monkeypatch, caplog):
    """A CorpusError inside a job is a 400 in its own words; any other ValueError (numpy's,
    say) is a bug: a 500 in one sentence, logged, and the server carries on."""
    from fastapi.testclient import TestClient

    from poetry_lm.text.corpus import CorpusError

    client = TestClient(app, raise_server_exceptions=False)
    for raised, status in ((CorpusError("the poem is empty"), 400), (ValueError("shape"), 500)):

        def fail(text, raised=raised):
            raise raised

        monkeypatch.setattr(app.state.poet, "score", fail)
        r = post(client, "/api/score", {"text": DENGGAO})
        assert r.status_code == status, r.text
        assert r.json()["detail"] == (
            "the poem is empty"
            if status == 400
            else "the server failed on this request (ValueError)"
        )
    assert "POST /api/score failed" in caplog.text and "ValueError: shape" in caplog.text
    monkeypatch.undo()
    assert post(client, "/api/score", {"text": DENGGAO}).status_code == 200


def fuzz_requests():
    """Malformed or oversized requests: wrong types, missing fields, huge sizes, unknown
    characters, bodies that are not JSON or not declared JSON."""
    huge = "月" * 100_000
    json_bodies = [
        ("/api/generate", {"n": 10**9}),
        ("/api/generate", {"n": None}),
        ("/api/generate", {"n": 1.5}),
        ("/api/generate", {"starts": "月"}),
        ("/api/generate", {"starts": [1]}),
        ("/api/generate", {"starts": [huge]}),
        ("/api/generate", {"starts": ["\x00"]}),
        ("/api/generate", {"starts": ["<eos>"]}),
        ("/api/generate", {"acrostic": huge}),
        ("/api/generate", {"form": 7}),
        ("/api/generate", {"form": "七绝", "acrostic": "☃☃☃☃"}),
        ("/api/generate", {"best_of": 10**6}),
        ("/api/generate", {"beam": -3}),
        ("/api/generate", {"max_len": 10**6}),
        ("/api/generate", {"top_k": "all"}),
        ("/api/generate", {"temperature": "hot"}),
        ("/api/generate", {"seed": 2**70}),
        ("/api/generate", {"tones": "yes please"}),
        ("/api/generate", "月"),
        ("/api/generate", 42),
        ("/api/generate", None),
        ("/api/score", {"text": 5}),
        ("/api/score", {"text": ["月"]}),
        ("/api/score", {"poem": "月"}),
        ("/api/check", {"text": huge[:401]}),
        ("/api/check", {"text": "   "}),
        ("/api/rewrite", {"text": "月", "line": "first"}),
        ("/api/rewrite", {"text": "月明。", "line": 10**12}),
        ("/api/rewrite", {"text": "，。", "line": 0}),
        ("/api/convert", {"text": "月"}),
    ]
    for path, body in json_bodies:
        yield path, {"content": json.dumps(body), "headers": {"content-type": "application/json"}}
    raw = [
        ("/api/generate", b"", "application/json"),
        ("/api/generate", b"\xff\xfe\x00", "application/json"),
        ("/api/score", '{"text": "月"'.encode(), "application/json"),
        ("/api/score", "text=月".encode(), "application/x-www-form-urlencoded"),
        ("/api/check", '{"text": "月"}'.encode(), "text/plain"),
        ("/api/check", '{"text": "月"}'.encode(), ""),
        ("/api/generate", b"x" * (10 * 2**20), "application/json"),
    ]
    for path, content, kind in raw:
        yield path, {"content": content, "headers": {"content-type": kind}}


def test_fuzz_malformed_requests_all_get_4xx_and_the_server_stays_up(client):
    cases = list(fuzz_requests())
    assert len(cases) >= 30
    for path, kwargs in cases:
        r = client.post(path, **kwargs)
        assert 400 <= r.status_code < 500, (path, kwargs.get("content", b"")[:80], r.text)
        detail = r.json()["detail"]
        assert isinstance(detail, str) and detail and "Traceback" not in detail
    assert client.get("/healthz").status_code == 200
    assert post(client, "/api/generate", {"form": "五绝"}).status_code == 200


def test_limits_are_in_the_docs(client):
    docs = client.get("/openapi.json").json()
    text = json.dumps(docs, ensure_ascii=False)
    for limit in (schemas.MAX_REQUEST_ROWS, schemas.MAX_POEMS, schemas.MAX_POEM_CHARS):
        assert str(limit) in docs["info"]["description"]
    assert "/api/generate" in docs["paths"] and "/api/check" in docs["paths"]
    assert '"maximum": 32' in text  # n's limit on its field


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_docs_pages_ask_only_this_server_for_their_scripts(client, path):
    """Swagger UI and ReDoc without the internet: every script, style, icon and the OpenAPI
    document they name is a path on this server, and each is served."""
    html = client.get(path).text
    urls = re.findall(r"""(?:src|href|spec-url)="([^"]+)"|url: '([^']+)'""", html)
    urls = [a or b for a, b in urls]
    assert len(urls) >= 3 and "/openapi.json" in urls, html
    assert "http" not in html.replace("window.location.origin", "")
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        assert client.get(url).status_code == 200, url


def test_serve_with_a_missing_model_is_one_sentence():
    result = CliRunner().invoke(main, ["serve", "--model", "/nonexistent/model.pt"])
    assert result.exit_code == 1
    assert "does not exist" in result.output and "Traceback" not in result.output


def test_serve_on_a_taken_port_is_one_sentence():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        result = CliRunner().invoke(main, ["serve", "--port", port])
    assert result.exit_code == 1
    assert (
        f"cannot listen on 127.0.0.1:{port}" in result.output and "Traceback" not in result.output
    )


def test_a_long_free_acrostic_raises_max_len_left_at_its_default_as_the_cli_does():
    def max_len(**fields):
        return schemas.GenerateRequest(**fields).poem_request().check().max_len

    assert max_len(acrostic="春夏秋冬" * 4) == 16 * 13
    assert max_len(acrostic="春夏") == max_len() == 128


@pytest.mark.parametrize("path", ["/api/generate", "/api/rewrite"])
def test_a_tiny_temperature_is_greedy_as_on_the_command_line(client, path):
    """Below 1e-6 the temperature samples greedily, for every caller: the API answers as
    ``generate --temperature 1e-40`` does (it once ended in an IndexError, a 500)."""
    from click.testing import CliRunner

    from poetry_lm.cli.write import generate_command

    body = {"starts": ["月"], "form": "五绝", "temperature": 1e-40}
    if path == "/api/rewrite":
        body = {"text": "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。", "line": 1, "n": 1,
                "temperature": 1e-40}  # fmt: skip
    replies = [post(client, path, {**body, "seed": seed}) for seed in (1, 2)]
    assert [r.status_code for r in replies] == [200, 200], replies[0].text
    answers = [{k: v for k, v in r.json().items() if k != "seed"} for r in replies]
    assert answers[0] == answers[1]  # greedy: the seed changes nothing (but the seed sent back)
    if path == "/api/generate":
        args = ["月", "--form", "五绝", "--temperature", "1e-40", "--format", "json"]
        cli = CliRunner().invoke(generate_command, args)
        assert json.loads(cli.output)["text"] == replies[0].json()["poems"][0]["text"]
