"""Seeded generator of labelled bus-ticket queries for the NER example.

Each example is a list of words (whitespace tokens; punctuation is its own word) with one
BIO tag per word over LABELS, plus the text those words make (`detokenize`: no space before
, . ? !). Queries mix hand-written templates with composed ones (operator, bus type, seat
type, route, date, time and price in varied orders), multi-word values ("New Delhi",
"next Friday", "Non AC", "Volvo Multi-Axle"), Hinglish routes ("Pune se Goa"), typos,
mixed case, and some queries with no entities at all.

    python generate.py OUT_DIR --n-train 2000 --n-test 600 --seed 0

writes OUT_DIR/{train,dev,test}.jsonl, one {"text", "tokens", "tags"} object per line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

LABELS = ("SRC", "DEST", "DATE", "TIME", "BUS_TYPE", "SEAT_TYPE", "OPERATOR", "PRICE")
TAGS = ("O",) + tuple(f"{prefix}-{label}" for label in LABELS for prefix in ("B", "I"))
NO_SPACE_BEFORE = {",", ".", "?", "!"}

CITIES = [
    "Bangalore", "Bengaluru", "Mumbai", "Chennai", "Hyderabad", "Pune", "Goa", "Mysore", "Coimbatore",
    "Madurai", "Kochi", "Mangalore", "Hubli", "Belgaum", "Nagpur", "Indore", "Jaipur", "Udaipur", "Ahmedabad",
    "Surat", "Vadodara", "Nashik", "Aurangabad", "Shirdi", "Tirupati", "Visakhapatnam", "Vizag", "Vijayawada",
    "Kolkata", "Siliguri", "Lucknow", "Kanpur", "Agra", "Dehradun", "Manali", "Shimla", "Chandigarh",
    "Amritsar", "Rishikesh", "Ooty", "Kodaikanal", "Pondicherry", "Salem", "Trichy", "Vellore", "Hosur",
    "Davangere", "Hampi", "Gokarna", "Panaji", "Kolhapur", "Solapur", "Ranchi", "Patna", "Varanasi",
    "Bhopal", "Gwalior", "Raipur", "Bhubaneswar", "Guntur", "Nellore", "Warangal", "Kurnool", "Shimoga",
    "Udupi", "Kozhikode", "Thrissur", "Kannur", "Ernakulam", "Kanyakumari", "Tirunelveli", "Thanjavur",
    "Madikeri", "Chikmagalur", "Lonavala", "Jodhpur", "Bikaner", "Jaisalmer", "Ajmer", "Kota", "Haridwar",
    "Nainital", "Dharamshala", "Jammu", "Delhi", "Thiruvananthapuram",
    "Mahabaleshwar", "New Delhi", "Navi Mumbai", "Mount Abu", "Port Blair", "Old Goa", "Vasco da Gama",
    "Sri Ganganagar", "Bodh Gaya",
]
OPERATORS = [
    "VRL", "VRL Travels", "SRS Travels", "KSRTC", "APSRTC", "TSRTC", "MSRTC", "Orange Travels",
    "Kallada Travels", "Neeta Travels", "Paulo Travels", "Greenline", "IntrCity SmartBus", "Zingbus",
    "National Travels", "Kaveri Travels", "Jabbar Travels", "Sugama Tourist", "Hans Travels",
    "Parveen Travels", "KPN Travels", "Sharma Transports", "Shrinath Travels", "Yolo Bus", "SRM Travels",
    "Durgamba Motors", "Jakhar Travels", "Kesineni Travels", "Morning Star Travels", "RedBus Express",
]
BUS_TYPES = [
    "AC", "Non-AC", "Non AC", "A/C", "non-ac", "Volvo", "Volvo AC", "AC Volvo", "Volvo Multi-Axle",
    "Multi-Axle", "Scania", "Mercedes", "Electric", "Luxury", "Deluxe", "Bharat Benz", "Ordinary", "Airavat",
]
SEAT_TYPES = [
    "sleeper", "semi-sleeper", "semi sleeper", "seater", "push back", "pushback seater", "sleeper berth",
    "upper berth", "lower berth", "window seat", "single sleeper", "2+1 sleeper", "recliner",
]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
SHORT_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
TIMES_OF_DAY = ["morning", "evening", "night", "late night", "early morning", "afternoon", "midnight"]

NO_ENTITY_QUERIES = [
    "hi", "hello", "thanks", "how do I cancel my ticket", "what is the refund policy",
    "show my bookings", "customer care number please", "is my seat confirmed?", "change my boarding point",
    "can I carry a pet on the bus", "where is my bus right now", "send the ticket to my email",
    "how much luggage is allowed", "I lost my ticket", "what are the covid rules", "talk to an agent",
    "which buses have live tracking?", "how do offers work", "apply coupon code", "my payment failed",
    "reschedule my trip please", "is there a toilet on board?", "what documents do I need",
    "book a bus ticket", "I want to travel", "bus tickets please", "show me some buses",
]

Word = tuple[str, str]  # (word, tag)


# ---------------------------------------------------------------- value pools

def ordinal(day: int) -> str:
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def date_value(rng: random.Random) -> tuple[str, str]:
    """(words before the entity, the date) -- "on" stays outside the entity."""
    day = rng.randint(1, 28)
    month = rng.randrange(12)
    weekday = rng.choice(WEEKDAYS)
    choices = [
        ("", "tomorrow"), ("", "today"), ("", "day after tomorrow"), ("", "next " + weekday),
        ("", "this " + weekday), ("", "coming " + weekday), ("on", weekday), ("", "this weekend"),
        ("", "next week"), ("on", f"{ordinal(day)} {MONTHS[month]}"), ("on", f"{MONTHS[month]} {ordinal(day)}"),
        ("on", f"{day} {SHORT_MONTHS[month]}"), ("on", f"{day}/{month + 1:02d}"),
        ("on", f"{ordinal(day)} of {MONTHS[month]}"), ("", "tonight"),
    ]
    return rng.choice(choices)


def time_value(rng: random.Random) -> tuple[str, str]:
    hour = rng.randint(1, 12)
    minutes = rng.choice(["00", "15", "45"])
    clock = rng.choice([f"{hour} pm", f"{hour} am", f"{hour}pm", f"{hour}:30 pm", f"{hour}:{minutes} am"])
    return rng.choice([("at", clock), ("after", clock), ("before", clock), ("around", clock),
                       ("in the", rng.choice(TIMES_OF_DAY[:2] + TIMES_OF_DAY[4:6])), ("", rng.choice(TIMES_OF_DAY))])


def price_value(rng: random.Random) -> tuple[str, str]:
    amount = rng.choice([300, 450, 500, 800, 999, 1000, 1200, 1500, 2000, 2500])
    value = rng.choice([f"Rs {amount}", f"Rs. {amount}", f"{amount} rupees", f"INR {amount}", f"{amount} rs",
                        str(amount)])
    return rng.choice(["under", "below", "less than", "within", "max", "budget", "cheaper than"]), value


# ---------------------------------------------------------------- building blocks

def words(text: str) -> list[Word]:
    """Plain words tagged O (punctuation split off so it never sticks to an entity)."""
    result = []
    for word in text.split():
        tail = []
        while len(word) > 1 and word[-1] in NO_SPACE_BEFORE:
            tail.insert(0, word[-1])
            word = word[:-1]
        result += [(word, "O")] + [(mark, "O") for mark in tail]
    return result


def entity(value: str, label: str) -> list[Word]:
    parts = value.split()
    return [(part, ("B-" if i == 0 else "I-") + label) for i, part in enumerate(parts)]


def with_lead(lead: str, value: str, label: str) -> list[Word]:
    return words(lead) + entity(value, label)


def route(rng: random.Random, src: str | None, dest: str | None) -> list[Word]:
    s = entity(src, "SRC") if src else []
    d = entity(dest, "DEST") if dest else []
    if src and dest:
        form = rng.choice(["from-to", "from-to", "to", "to", "to-from", "se", "between", "leaving", "towards",
                           "bare", "dash"])
        return {
            "from-to": words("from") + s + words("to") + d,
            "to": s + words("to") + d,
            "to-from": words("to") + d + words("from") + s,
            "se": s + words("se") + d,
            "between": words("between") + s + words("and") + d,
            "leaving": words("leaving") + s + words(rng.choice(["for", "going to"])) + d,
            "towards": words("from") + s + words(rng.choice(["towards", "bound for", "heading to"])) + d,
            "bare": s + d,
            "dash": s + words("-") + d,
        }[form]
    if src:
        return words(rng.choice(["from", "leaving", "departing from", "starting at"])) + s
    return words(rng.choice(["to", "for", "going to", "towards"])) + d


def vehicle(rng: random.Random, operator, bus_type, seat_type) -> list[Word]:
    """[operator] [bus type] [seat type] noun, sometimes with the operator after the noun."""
    noun = words(rng.choice(["bus", "bus", "buses", "ticket", "tickets", "bus ticket", "seats", "coach", ""]))
    o = entity(operator, "OPERATOR") if operator else []
    b = entity(bus_type, "BUS_TYPE") if bus_type else []
    t = entity(seat_type, "SEAT_TYPE") if seat_type else []
    if operator and rng.random() < 0.3:
        return b + t + noun + words(rng.choice(["by", "of", "from operator", "with"])) + o
    if rng.random() < 0.15:
        return o + t + b + noun  # "sleeper AC bus"
    return o + b + t + noun


TEMPLATES = [
    "{bus_type} {seat_type} bus {route} {date}",
    "I want to travel {route} {date}",
    "is there any {bus_type} bus {route} {date}?",
    "need {seat_type} seats in {operator} {route}",
    "what time does the {operator} bus leave {src}?",
    "{date} {route} {seat_type}",
    "{src} {dest} {date}",
    "cheapest bus {route} {price}",
    "{operator} {route} {date} {time}",
    "book {count} {seat_type} tickets {route} {date}",
    "any {bus_type} buses {route} {time}?",
    "show {operator} buses {route}",
    "{route} {bus_type} {date} {price}",
    "I need to reach {dest} {date} {time}",
    "fare of {operator} {bus_type} {route}",
    "is {operator} running {route} {date}",
    "{seat_type} in {bus_type} {route} please",
    "plan a trip {route} {date}, {seat_type} preferred",
]


def fill_template(template: str, slots: dict) -> list[Word]:
    result: list[Word] = []
    for piece in template.split():
        trailing = ""
        if "{" in piece and piece[-1] in NO_SPACE_BEFORE:  # "{date}," -> slot, then ","
            piece, trailing = piece[:-1], piece[-1]
        if piece.startswith("{") and piece.endswith("}"):
            result += slots[piece[1:-1]]()
        else:
            result += words(piece)
        if trailing:
            result.append((trailing, "O"))
    return result


def composed(rng: random.Random, values: dict) -> list[Word]:
    """A query built from parts in one of several orders, each part present or not."""
    v = values
    prefix = words(rng.choice(["", "", "book", "show me", "find", "I want", "i need a", "any", "looking for",
                               "get me", "search", "list", "please book", "can you find", "are there any",
                               "cheapest", "hey,", "hi, need"]))
    veh = vehicle(rng, v["operator"], v["bus_type"], v["seat_type"])
    way = route(rng, v["src"], v["dest"]) if (v["src"] or v["dest"]) else []
    when = (with_lead(*v["date"], "DATE") if v["date"] else []) + (with_lead(*v["time"], "TIME") if v["time"] else [])
    cost = with_lead(*v["price"], "PRICE") if v["price"] else []
    suffix = words(rng.choice(["", "", "", "please", "pls", "asap", "?", "for 2 people", "with charging point",
                               "for my family", "."]))
    order = rng.choice([
        [prefix, veh, way, when, cost, suffix],
        [prefix, veh, way, when, cost, suffix],
        [prefix, way, veh, when, cost, suffix],
        [prefix, when, veh, way, cost, suffix],
        [prefix, way, when, veh, cost, suffix],
        [prefix, veh, when, way, cost, suffix],
        [prefix, cost, veh, way, when, suffix],
    ])
    return [word for part in order for word in part]


def sample_values(rng: random.Random) -> dict:
    src, dest = rng.sample(CITIES, 2)
    has_route = rng.random()
    return {
        "src": src if has_route < 0.85 or 0.93 <= has_route < 0.97 else None,
        "dest": dest if has_route < 0.93 else None,
        "operator": rng.choice(OPERATORS) if rng.random() < 0.35 else None,
        "bus_type": rng.choice(BUS_TYPES) if rng.random() < 0.5 else None,
        "seat_type": rng.choice(SEAT_TYPES) if rng.random() < 0.5 else None,
        "date": date_value(rng) if rng.random() < 0.6 else None,
        "time": time_value(rng) if rng.random() < 0.2 else None,
        "price": price_value(rng) if rng.random() < 0.12 else None,
    }


def templated(rng: random.Random) -> list[Word]:
    src, dest = rng.sample(CITIES, 2)
    slots = {
        "route": lambda: route(rng, src, dest),
        "src": lambda: entity(src, "SRC"),
        "dest": lambda: entity(dest, "DEST"),
        "date": lambda: with_lead(*date_value(rng), "DATE"),
        "time": lambda: with_lead(*time_value(rng), "TIME"),
        "price": lambda: with_lead(*price_value(rng), "PRICE"),
        "operator": lambda: entity(rng.choice(OPERATORS), "OPERATOR"),
        "bus_type": lambda: entity(rng.choice(BUS_TYPES), "BUS_TYPE"),
        "seat_type": lambda: entity(rng.choice(SEAT_TYPES), "SEAT_TYPE"),
        "count": lambda: words(rng.choice(["2", "two", "3", "1", "four"])),
    }
    return fill_template(rng.choice(TEMPLATES), slots)


# ---------------------------------------------------------------- noise

def typo(rng: random.Random, word: str) -> str:
    """Swap, drop or double one inner letter (what fast thumbs do)."""
    i = rng.randrange(1, len(word) - 2)
    kind = rng.randrange(3)
    if kind == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == 1:
        return word[:i] + word[i + 1:]
    return word[:i] + word[i] + word[i:]


def add_noise(rng: random.Random, query: list[Word], typo_rate: float) -> list[Word]:
    query = list(query)
    if rng.random() < typo_rate:
        candidates = [i for i, (w, _) in enumerate(query) if len(w) >= 5 and w.isalpha()]
        if candidates:
            i = rng.choice(candidates)
            query[i] = (typo(rng, query[i][0]), query[i][1])
    style = rng.random()
    if style < 0.2:
        query = [(w.lower(), t) for w, t in query]
    elif style < 0.25:
        query = [(w.upper(), t) for w, t in query]
    elif style < 0.35:
        query = [(w.swapcase() if rng.random() < 0.3 else w, t) for w, t in query]
    elif style < 0.6 and query:
        query[0] = (query[0][0][:1].upper() + query[0][0][1:], query[0][1])
    return query


# ---------------------------------------------------------------- public API

def make_example(rng: random.Random, *, typo_rate: float = 0.12, no_entity_rate: float = 0.06) -> dict:
    draw = rng.random()
    if draw < no_entity_rate:
        query = words(rng.choice(NO_ENTITY_QUERIES))
    elif draw < 0.45:
        query = templated(rng)
    else:
        query = composed(rng, sample_values(rng))
    query = [(w, t) for w, t in add_noise(rng, query, typo_rate) if w]
    tokens = [w for w, _ in query]
    tags = [t for _, t in query]
    text, _ = detokenize(tokens)
    return {"text": text, "tokens": tokens, "tags": tags}


def generate(n: int, *, seed: int, typo_rate: float = 0.12, no_entity_rate: float = 0.06) -> list[dict]:
    """`n` examples; the same seed gives the same list."""
    rng = random.Random(seed)
    return [make_example(rng, typo_rate=typo_rate, no_entity_rate=no_entity_rate) for _ in range(n)]


def detokenize(tokens: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """The text the words make, and each word's (start, end) in it."""
    text, offsets = "", []
    for token in tokens:
        if text and token not in NO_SPACE_BEFORE:
            text += " "
        offsets.append((len(text), len(text) + len(token)))
        text += token
    return text, offsets


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise SystemExit(f"error: {path} does not exist; create it with generate.py")
    examples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            example = json.loads(line)
            if len(example["tokens"]) != len(example["tags"]):
                raise ValueError("tokens and tags differ in length")
        except (ValueError, KeyError, TypeError) as error:
            raise SystemExit(f"error: {path} line {number}: not an example with tokens and tags ({error})") from None
        examples.append(example)
    return examples


def write_jsonl(path: Path, examples: list[dict]) -> None:
    write_atomic(path, "".join(json.dumps(example, ensure_ascii=False) + "\n" for example in examples))


def write_atomic(path: Path, text: str) -> None:
    """Write through a temp file in the same folder, then rename: never a half-written file."""
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temp, 0o666 & ~_umask())  # mkstemp makes it private; give it the usual mode
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="folder for train.jsonl, dev.jsonl and test.jsonl")
    parser.add_argument("--n-train", type=int, default=2000, help="training examples [default: 2000]")
    parser.add_argument("--n-dev", type=int, default=None, help="dev examples [default: same as --n-test]")
    parser.add_argument("--n-test", type=int, default=600, help="held-out test examples [default: 600]")
    parser.add_argument("--seed", type=int, default=0, help="random seed [default: 0]")
    parser.add_argument("--typo-rate", type=float, default=0.12, help="share of queries with a typo [default: 0.12]")
    args = parser.parse_args(argv)
    n_dev = args.n_test if args.n_dev is None else args.n_dev
    if min(args.n_train, n_dev, args.n_test) < 1:
        parser.error("--n-train, --n-dev and --n-test must be at least 1")
    if not 0 <= args.typo_rate <= 1:
        parser.error("--typo-rate must be between 0 and 1")
    if args.out_dir.exists() and not args.out_dir.is_dir():
        parser.error(f"{args.out_dir} is a file; give a folder")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    # Separate streams per split (seed, seed+1, seed+2): changing --n-train leaves test unchanged.
    splits = {"train": (args.n_train, 0), "dev": (n_dev, 1), "test": (args.n_test, 2)}
    for name, (count, offset) in splits.items():
        examples = generate(count, seed=args.seed * 1000 + offset, typo_rate=args.typo_rate)
        write_jsonl(args.out_dir / f"{name}.jsonl", examples)
        print(f"{name}: {count} queries -> {args.out_dir / f'{name}.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
