"""A deterministic corpus of short first-person memory sentences, questions about the same
vocabulary, and their embeddings with the app's local model, cached on disk in bench/cache/."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import random
import re
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt

from app.memories.writer import content_hash
from app.providers.embeddings import LocalEmbedder, build_embedder
from app.settings import load_settings
from bench.progress import log
from bench.service import service_environ

CACHE_DIR = Path(__file__).resolve().parent / "cache"
CHUNK = 5000  # embeddings are cached per chunk of the sentence stream, so sizes share work

NAMES = """Maria James Aisha Chen Lucas Sofia Omar Hannah Diego Priya Noah Elena Kenji Fatima Liam Chloe
Mateo Zara Ethan Yuki Amara Felix Ingrid Rahul Leila Oscar Nadia Victor Mei Samuel Ana Tobias Grace Ivan
Lena Marco Ruth Daniel Keiko Hugo Isla Arjun Freya Kofi Alma Pierre Rosa Emil Dara Jonas Lucia Ben Nora
Tariq Julia Sven Maya Paolo Esther Caleb Ines Rohan Clara Jasper Amina Leo Olga Raj Beatrice Finn Carmen
Hiro Vera Malik Sara Anton Lily Bruno Mila Kwame Eva Theo Alice Nikolai Joy Andre Hana Felipe Greta Sanjay
Ada Dmitri Iris Rafael Wendy Kai Tessa Gabriel Naomi Emre Lotte Yusuf Cora Rami Stella Bjorn Talia Marcus
Selin Adrian Ruby Hamza Wren Elias Pia Moses Daphne Luca Zoe Idris Mara""".split()
PLACES = """Lisbon Porto Madrid Barcelona Paris Lyon Berlin Munich Hamburg Vienna Prague Krakow Warsaw
Budapest Rome Milan Naples Florence Venice Athens Istanbul Cairo Marrakesh Nairobi Lagos Accra Cape-Town
Dubai Mumbai Delhi Bangalore Kathmandu Bangkok Hanoi Singapore Jakarta Bali Manila Seoul Busan Tokyo Kyoto
Osaka Sapporo Beijing Shanghai Taipei Sydney Melbourne Auckland Wellington Vancouver Toronto Montreal
Seattle Portland Denver Austin Chicago Boston Brooklyn Miami Atlanta Nashville Mexico-City Oaxaca Havana
Bogota Lima Cusco Santiago Buenos-Aires Montevideo Reykjavik Oslo Bergen Stockholm Copenhagen Helsinki
Tallinn Riga Dublin Galway Edinburgh Glasgow Manchester London Brighton Bristol Amsterdam Utrecht Brussels
Ghent Zurich Geneva Lausanne Salzburg Ljubljana Zagreb Split Dubrovnik Sarajevo Sofia-city Bucharest Tbilisi
Yerevan Baku Almaty Tashkent Ulaanbaatar Hokkaido Tasmania Patagonia Tuscany Provence Bavaria Andalusia
Normandy Sicily Crete Sardinia Corsica Madeira the-Azores the-Alps the-Dolomites the-Highlands""".split()
FOODS = """sushi ramen pho pad-thai green-curry dumplings bibimbap kimchi tacos burritos enchiladas
ceviche paella tapas risotto lasagna carbonara pizza gnocchi falafel hummus shawarma baklava moussaka
souvlaki couscous tagine jollof-rice injera biryani dal butter-chicken samosas dosa laksa nasi-goreng
satay banh-mi pierogi goulash schnitzel bratwurst pretzels fondue raclette croissants crepes ratatouille
bouillabaisse fish-and-chips shepherd's-pie haggis porridge bagels pancakes waffles cheesecake tiramisu
gelato churros brownies apple-pie blueberry-muffins avocado-toast quinoa-salad lentil-soup miso-soup
tofu tempeh seitan peanuts shellfish mushrooms olives goat-cheese blue-cheese dark-chocolate
strawberries mangoes pineapple coconut eggplant cauliflower brussels-sprouts spinach kale beetroot
oysters lobster salmon tuna anchovies lamb chorizo pulled-pork fried-chicken popcorn nachos poke
matcha espresso oat-milk kombucha""".split()
HOBBIES = """rock-climbing bouldering surfing kayaking sailing hiking trail-running cycling swimming
yoga pilates boxing fencing archery skiing snowboarding ice-skating tennis badminton squash
table-tennis chess go poker crosswords sudoku knitting crochet sewing pottery woodworking painting
watercolour sketching calligraphy photography birdwatching gardening beekeeping baking bread-making
home-brewing wine-tasting salsa-dancing tango ballet playing-the-piano playing-the-guitar the-violin
the-drums singing-in-a-choir stand-up-comedy improv theatre writing-poetry journaling reading-sci-fi
learning-Japanese learning-Spanish learning-German birding stargazing astronomy geocaching
board-games video-games speedrunning podcasting blogging origami model-trains 3D-printing
electronics robotics coding-side-projects open-source volunteering marathon-training""".split()
JOBS = """nurse teacher software-engineer data-scientist product-manager designer architect
accountant lawyer paralegal pharmacist dentist physiotherapist veterinarian electrician plumber
carpenter chef baker barista journalist editor translator librarian researcher biologist chemist
physicist mathematician economist consultant sales-manager marketing-lead recruiter project-manager
civil-engineer mechanical-engineer pilot flight-attendant paramedic firefighter police-officer
social-worker psychologist therapist midwife surgeon radiologist optometrist photographer
video-editor animator game-developer DevOps-engineer security-analyst UX-researcher copywriter
musician music-teacher yoga-instructor personal-trainer real-estate-agent bank-teller
financial-analyst insurance-broker logistics-coordinator warehouse-manager farmer florist tailor
hairdresser""".split()
PETS = """dog cat puppy kitten rabbit hamster guinea-pig parrot budgie canary goldfish turtle tortoise
iguana gecko snake ferret chinchilla hedgehog horse pony goat chicken duck rat""".split()
PET_NAMES = """Biscuit Luna Max Bella Charlie Milo Coco Daisy Rocky Pepper Simba Nala Oreo Ziggy Mochi
Pickle Waffles Peanut Ginger Shadow Maple Olive Bruno Rosie Teddy Loki Pixel Noodle Sunny Chester Hazel
Juniper Tofu Poppy Bear Scout Willow Domino Marble Kiwi Dumpling Mango Sushi-cat Ripley Sprout Fig Basil
Clementine Bandit Cosmo""".split()
TOOLS = """VS-Code Vim Emacs IntelliJ PyCharm Xcode Figma Sketch Notion Obsidian Trello Jira Linear Asana
Slack Discord Zoom Teams Excel Google-Sheets Airtable Tableau Power-BI Jupyter RStudio MATLAB Docker
Kubernetes Terraform Ansible GitHub GitLab Bitbucket Postman Grafana Datadog Sentry Photoshop
Lightroom Premiere DaVinci-Resolve Blender Unity Unreal-Engine Ableton Logic-Pro GarageBand Canva
Miro Loom Todoist Things Bear-notes Evernote Dropbox OneDrive 1Password Bitwarden Raspberry-Pi Arduino
a-Kindle an-iPad a-Wacom-tablet a-standing-desk a-mechanical-keyboard noise-cancelling-headphones
a-Garmin-watch an-Instant-Pot an-air-fryer a-sourdough-starter""".split()
RELATIONS = """sister brother mother father grandmother grandfather aunt uncle cousin niece nephew
partner wife husband daughter son best-friend roommate neighbour colleague boss mentor""".split()
SUBJECTS = """biology chemistry physics mathematics computer-science economics history philosophy
psychology sociology linguistics literature art-history architecture music nursing law medicine
engineering statistics geography political-science anthropology journalism marketing""".split()
LANGUAGES = """Spanish French German Italian Portuguese Japanese Korean Mandarin Cantonese Arabic Hindi
Turkish Greek Dutch Swedish Norwegian Polish Russian Swahili Vietnamese Thai Hebrew Persian Icelandic
Welsh""".split()
CARS = """a-Toyota-Corolla a-Honda-Civic a-Tesla-Model-3 a-VW-Golf a-Subaru-Outback a-Mini-Cooper
a-Ford-Focus a-Kia-Niro a-Volvo-XC40 a-Fiat-500 a-Prius a-Jeep-Wrangler a-cargo-bike an-e-scooter
a-vintage-Vespa a-Renault-Clio a-Mazda-MX-5 a-Nissan-Leaf""".split()
ACTIVITIES = """hiking cycling running swimming kayaking camping fishing sailing climbing skiing
surfing snorkelling diving birdwatching stargazing horse-riding paddleboarding canoeing""".split()
TASKS = """the-quarterly-report the-budget the-product-launch the-website-redesign the-migration
the-hiring-plan the-conference-talk the-grant-application the-kitchen-renovation the-wedding-plans
the-move the-tax-return the-marathon-plan the-book-club the-garden-project the-thesis the-audit
the-onboarding-docs the-API-design the-offsite the-fundraiser the-podcast-episode the-photo-album
the-insurance-claim the-lease-renewal the-holiday-itinerary the-birthday-party the-team-retro
the-data-pipeline the-security-review""".split()
MONTHS = """January February March April May June July August September October November December""".split()
WEEKDAYS = """Monday Tuesday Wednesday Thursday Friday Saturday Sunday""".split()
SEASONS = """spring summer autumn winter""".split()
YEARS = [str(y) for y in range(2012, 2026)]

TEMPLATES = """I love eating {food} at a little place in {place}.
I'm allergic to {food}, so I always check the menu.
I can't stand {food}; it tastes awful to me.
My favourite dish is {food}, especially the way {name} makes it.
I prefer {food} over {food2} for dinner.
My doctor told me to cut down on {food}.
I had {food} with {name} in {place} on {month} {day}.
My {relation} {name} lives in {place}.
My {relation} {name} works as a {job}.
My {relation} {name}'s birthday is on {month} {day}.
My {relation} {name} just moved to {place}.
I work as a {job} in {place}.
I moved to {place} in {year} to start a job as a {job}.
I used to be a {job} before I became a {job2}.
My boss {name} wants {task} finished by {weekday}.
I have a meeting with {name} about {task} on {weekday}.
I'm behind on {task} and it's stressing me out.
I finished {task} last {weekday} with help from {name}.
I have a {pet} named {petname}.
I adopted a {pet} called {petname} in {year}.
My {pet} {petname} is scared of thunderstorms.
I take {petname}, my {pet}, to the vet in {place} every {month}.
I started {hobby} in {month} {year}.
I go {hobby} with {name} every {weekday}.
My favourite weekend activity is {hobby}.
I want to get better at {hobby} this year.
I gave up {hobby} after I hurt my knee in {year}.
I use {tool} every day at work.
I switched from {tool} to {tool2} last {month}.
{name} recommended {tool} to me for {task}.
I can't work without {tool}.
My birthday is on {month} {day}.
I was born in {place} in {year}.
I went {activity} with {name} near {place} last {season}.
I'm planning a trip to {place} in {month}.
I spent two weeks in {place} in the {season} of {year}.
I'd love to visit {place} with my {relation} one day.
I studied {subject} at university in {place}.
I'm learning {language} because {name} speaks it.
I speak {language} with my {relation} at home.
I drive {car} to work in {place}.
I sold {car} in {year} and now I cycle everywhere.
I'm vegetarian except for {food} on special occasions.
I'm training for a half marathon in {place} in {month}.
I go to bed around eleven and get up early on {weekday}s.
I read about {hobby} on my commute every {weekday}.
My {relation} {name} taught me {hobby} when I was a kid.
I'm saving money for a trip to {place} in {year}.
I met {name} at a {hobby} class in {place}.
I keep forgetting to call my {relation} {name} on {weekday}s.
I bought {tool} for {task} in {month}.
I'm hosting dinner on {weekday} and I'll cook {food}.
I always order {food} when I'm in {place}.
I'm thinking of adopting a {pet} this {season}.
{name} and I are doing {task} together this {season}.
I volunteer at an animal shelter in {place} on {weekday}s.
My dentist appointment is on {month} {day} at nine.
I lost my {tool} on the train to {place}.
I stopped drinking coffee in {year} and switched to {food}.
My {relation} {name} is allergic to {food}.""".splitlines()

QUESTIONS = """What food do I like?
What am I allergic to?
What food can't I stand?
What is my favourite dish?
Where does my {relation} live?
What does my {relation} do for work?
When is my {relation}'s birthday?
What do I do for a living?
Where do I work?
What is my job?
Who is {name}?
What do I know about {name}?
When is my meeting with {name}?
What is my pet's name?
Do I have a {pet}?
What is my {pet} called?
When did I start {hobby}?
Who do I go {hobby} with?
What are my hobbies?
What tools do I use at work?
Did I switch to {tool}?
Who recommended {tool}?
When is my birthday?
Where was I born?
Where am I planning to travel?
Have I been to {place}?
What did I do in {place}?
What did I study at university?
What languages am I learning?
What car do I drive?
Do I eat {food}?
Where did I eat {food}?
What did I eat with {name}?
What am I working on with {name}?
What is due on {weekday}?
What did I do last {season}?
When is my dentist appointment?
What happened in {year}?
Who is allergic to {food}?
What am I doing on {weekday}s?""".splitlines()

_SLOTS = {
    "name": NAMES,
    "place": PLACES,
    "food": FOODS,
    "food2": FOODS,
    "hobby": HOBBIES,
    "job": JOBS,
    "job2": JOBS,
    "pet": PETS,
    "petname": PET_NAMES,
    "tool": TOOLS,
    "tool2": TOOLS,
    "relation": RELATIONS,
    "subject": SUBJECTS,
    "language": LANGUAGES,
    "car": CARS,
    "activity": ACTIVITIES,
    "task": TASKS,
    "month": MONTHS,
    "weekday": WEEKDAYS,
    "season": SEASONS,
    "year": YEARS,
    "day": [str(d) for d in range(1, 29)],
}
Matrix = npt.NDArray[np.float32]  # one embedding a row

_SLOT = re.compile(r"\{(\w+)\}")
_ARTICLE = re.compile(r"\ba ([aeiouAEIOU])")


def _fill(template: str, rng: random.Random) -> str:
    text = _SLOT.sub(lambda m: rng.choice(_SLOTS[m.group(1)]).replace("-", " "), template)
    text = _ARTICLE.sub(r"an \1", text)
    return text[0].upper() + text[1:]


def corpus_version() -> str:
    """Changes whenever the templates or vocabulary change, so cached embeddings follow them."""
    h = hashlib.sha1()
    for part in (TEMPLATES, QUESTIONS, *(_SLOTS[k] for k in sorted(_SLOTS))):
        h.update("\n".join(part).encode())
    return h.hexdigest()[:10]


def sentences(seed: int) -> Iterator[str]:
    """An endless deterministic stream of distinct sentences (size N = its first N)."""
    rng = random.Random(seed)
    seen: set[str] = set()
    while True:
        text = _fill(rng.choice(TEMPLATES), rng)
        digest = content_hash(text)
        if digest not in seen:
            seen.add(digest)
            yield text


def make_corpus(seed: int, n: int) -> list[str]:
    stream = sentences(seed)
    return [next(stream) for _ in range(n)]


def make_queries(seed: int, n: int) -> list[str]:
    rng = random.Random(seed + 1)
    out: list[str] = []
    seen: set[str] = set()
    attempts = 0
    while len(out) < n and attempts < n * 50:
        attempts += 1
        q = _fill(rng.choice(QUESTIONS), rng)
        if q not in seen:
            seen.add(q)
            out.append(q)
    return out


def assign_users(seed: int, n: int, users: int) -> list[str]:
    """Roughly equal: each memory goes to a uniformly drawn user (user_0001 ...)."""
    rng = np.random.default_rng(seed + n)
    idx = rng.integers(0, users, size=n)
    return [f"user_{i + 1:04d}" for i in idx]


class CorpusEmbedder:
    """The service's own local embedder, built from the settings the managed service starts with,
    one per core, each on one thread (the same vectors as the service's, whatever its thread
    setting), and the precompute (before the service starts, alone on the machine) shards every
    step over them."""

    MAX_MODELS = 4  # a model is ~90 MB; beyond a few cores the precompute is short anyway

    def __init__(self, embedders: list[LocalEmbedder]) -> None:
        self._embedders = embedders
        # The runtime is part of the name (and of the cache files): int8 vectors differ from fp32.
        self.model = f"{embedders[0].model}-{embedders[0].runtime}"
        # Search queries are embedded as the service embeds them (its query runtime), so exact
        # search ranks with the very vector the service searched with.
        self.query_model = f"{embedders[0].model}-{embedders[0].query_runtime}"
        self.dimensions = embedders[0].dimensions

    @classmethod
    async def start(cls) -> CorpusEmbedder:
        mem = load_settings(service_environ()).mem
        if mem.embedding_provider != "local":
            raise RuntimeError(f"the corpus needs the local embedder, not {mem.embedding_provider!r}")
        # One model per core already uses every core: more threads per model would oversubscribe.
        mem = dataclasses.replace(mem, embedding_threads=1)
        embedders = []
        for _ in range(min(os.cpu_count() or 1, cls.MAX_MODELS)):
            embedder = build_embedder(mem)
            assert isinstance(embedder, LocalEmbedder)
            embedders.append(embedder)
        await asyncio.gather(*(e.warm_up() for e in embedders))
        return cls(embedders)

    async def encode(self, texts: list[str], *, phase: str | None = None, query: bool = False) -> Matrix:
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        k = len(self._embedders)
        step = 512
        started = last = time.monotonic()
        for i in range(0, len(texts), step):
            batch = texts[i : i + step]
            shards = await asyncio.gather(
                *(e.embed(batch[j::k], query=query) for j, e in enumerate(self._embedders))
            )
            for j, vectors in enumerate(shards):
                if vectors:
                    out[i + j : i + len(batch) : k] = np.stack(vectors)
            now = time.monotonic()
            if phase and (now - last >= 3 or i + step >= len(texts)):
                last = now
                done = min(i + step, len(texts))
                log(f"{phase}: {done}/{len(texts)} sentences, {done / (now - started):.0f}/s")
        return out

    async def close(self) -> None:
        await asyncio.gather(*(e.close() for e in self._embedders))


async def embeddings(seed: int, n: int, embedder: CorpusEmbedder) -> tuple[list[str], Matrix]:
    """The first n sentences of the stream and their vectors, computed once per chunk and cached."""
    texts = make_corpus(seed, n)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    parts: list[Matrix] = []
    chunks = (n + CHUNK - 1) // CHUNK
    for c in range(chunks):
        path = CACHE_DIR / f"emb-{embedder.model}-v{corpus_version()}-s{seed}-chunk{CHUNK}x{c:03d}.npy"
        if path.exists():
            parts.append(np.load(path))
            continue
        chunk_texts = make_corpus(seed, (c + 1) * CHUNK)[c * CHUNK :]
        vectors = await embedder.encode(chunk_texts, phase=f"corpus/embed chunk {c + 1}/{chunks}")
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, vectors)
        tmp.replace(path)
        parts.append(vectors)
    return texts, np.concatenate(parts)[:n]


async def query_embeddings(seed: int, queries: list[str], embedder: CorpusEmbedder) -> Matrix:
    key = hashlib.sha1("\n".join(queries).encode()).hexdigest()[:12]
    path = CACHE_DIR / f"queries-{embedder.query_model}-s{seed}-{key}.npy"
    if path.exists():
        loaded: Matrix = np.load(path)
        return loaded
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    vectors = await embedder.encode(queries, query=True)
    np.save(path, vectors)
    return vectors
