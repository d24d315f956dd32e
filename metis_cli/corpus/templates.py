"""Template sentences: many distinct, readable training sentences from a small grammar (as in GRID).

The hand-written list (``sentences.txt``, 260 sentences) is what the default corpus reads, and what
every dev and test set reads. The ``large`` corpus size adds training speech that needs far more
distinct sentences than that: ``template_sentences(n, rng)`` draws them from the patterns below, so
that no speaker reads a sentence twice and the word sequences keep changing.
"""
from __future__ import annotations

import re

import numpy as np

TEMPLATE_PREFIX = "t"  # sentence ids t00001, ... (the hand-written ones are s0001, ...)

PEOPLE = (
    "baker", "farmer", "teacher", "doctor", "sailor", "painter", "driver", "gardener", "student", "pilot",
    "nurse", "miner", "fisherman", "carpenter", "singer", "writer", "captain", "soldier", "merchant", "tailor",
    "shepherd", "hunter", "porter", "clerk", "judge", "poet", "dancer", "cook", "guard", "neighbour",
    "stranger", "traveller", "visitor", "engineer", "plumber", "barber", "banker", "waiter", "builder",
    "keeper", "mechanic", "reporter", "librarian", "musician", "officer", "ranger", "weaver", "potter",
    "blacksmith", "grocer", "mayor", "professor", "manager", "surgeon", "chemist", "butcher",
)
NAMES = (
    "Anna", "Ben", "Clara", "David", "Ellen", "Frank", "Grace", "Henry", "Irene", "Jack", "Karen", "Leo",
    "Maria", "Nathan", "Olivia", "Peter", "Rachel", "Simon", "Teresa", "Victor", "Walter", "Alice", "Bruce",
    "Carol", "Daniel", "Emma", "Felix", "George", "Helen", "Isaac", "Julia", "Kevin", "Laura", "Martin",
    "Nora", "Oscar", "Paula", "Robert", "Sarah", "Thomas", "Ruth", "Arthur", "Diana", "Edward", "Frances",
    "Harold", "Lucy", "Michael", "Nancy", "Philip", "Susan", "Tony", "Vera", "William", "Molly", "Sam",
)
ANIMALS = (
    "dog", "cat", "horse", "goat", "rabbit", "fox", "owl", "duck", "goose", "sparrow", "crow", "pony",
    "donkey", "lamb", "calf", "puppy", "kitten", "squirrel", "beaver", "turtle", "frog", "hawk", "pigeon",
    "robin", "mule", "bull", "hen", "rooster", "deer", "badger", "otter", "mouse", "parrot", "swan", "wolf",
)
THINGS = (
    "basket", "bottle", "blanket", "bucket", "candle", "carpet", "chair", "clock", "coat", "cup", "drum",
    "envelope", "fence", "flag", "garden", "gate", "hammer", "hat", "jacket", "jar", "kettle", "ladder",
    "lamp", "letter", "map", "mirror", "needle", "notebook", "package", "paddle", "painting", "pan",
    "parcel", "pencil", "piano", "picture", "pillow", "plate", "pocket", "pot", "rope", "ribbon", "saddle",
    "scarf", "shovel", "sign", "spoon", "stamp", "stool", "suitcase", "table", "ticket", "towel", "tray",
    "trumpet", "umbrella", "violin", "wagon", "wallet", "window", "bicycle", "boat", "bridge", "cabin",
    "canoe", "cart", "engine", "fountain", "lantern", "machine", "motor", "oven", "radio", "rocket",
    "sandwich", "barrel", "book", "bowl", "brush", "cabinet", "camera", "desk", "door", "feather",
    "guitar", "helmet", "key", "kite", "knife", "mattress", "medal", "napkin", "net", "pipe", "puzzle",
    "quilt", "ring", "roof", "ruler", "shelf", "shoe", "sofa", "statue", "stove", "sweater", "tent",
    "thermometer", "tool", "trophy", "trunk", "vase", "wheel", "whistle", "anchor", "banner", "cushion",
    "lever", "locket", "magnet", "marble", "muffin", "pebble", "pumpkin", "rattle", "sail", "tablet",
)
ADJECTIVES = (
    "old", "new", "small", "large", "heavy", "light", "bright", "dark", "quiet", "noisy", "clean", "dusty",
    "wet", "dry", "warm", "cold", "soft", "hard", "round", "square", "narrow", "wide", "tall", "short",
    "broken", "shiny", "rusty", "wooden", "golden", "silver", "purple", "yellow", "orange", "green", "blue",
    "scarlet", "brown", "grey", "pale", "faded", "fragile", "sturdy", "tiny", "enormous", "ancient",
    "modern", "strange", "familiar", "famous", "elegant", "simple", "precious", "valuable", "cheap", "expensive",
    "borrowed", "painted", "polished", "wrinkled", "twisted", "smooth", "rough", "crooked", "striped",
    "spotted", "frozen", "crowded", "empty", "hollow", "leather", "woollen", "copper", "velvet", "marble",
)
PEOPLE_ADJECTIVES = (
    "old", "young", "tall", "short", "quiet", "noisy", "famous", "humble", "proud", "gentle", "clever",
    "lazy", "busy", "patient", "careful", "cheerful", "tired", "hungry", "lucky", "lonely", "curious",
    "nervous", "polite", "sleepy", "friendly", "stubborn", "elegant", "kind", "brave", "honest", "angry",
    "eager", "calm", "serious", "thoughtful", "sensible", "modest", "weary", "restless", "jolly",
)
# base form / past tense; objects are things.
OBJECT_VERBS = (
    "carry/carried", "paint/painted", "repair/repaired", "clean/cleaned", "open/opened", "close/closed",
    "move/moved", "lift/lifted", "drop/dropped", "polish/polished", "wrap/wrapped", "fold/folded",
    "find/found", "lose/lost", "buy/bought", "sell/sold", "borrow/borrowed", "lend/lent", "bring/brought",
    "fetch/fetched", "hide/hid", "check/checked", "measure/measured", "weigh/weighed", "mend/mended",
    "build/built", "break/broke", "drag/dragged", "push/pushed", "pull/pulled", "hang/hung", "hold/held",
    "keep/kept", "leave/left", "share/shared", "return/returned", "deliver/delivered", "examine/examined",
    "inspect/inspected", "describe/described", "admire/admired", "notice/noticed", "ignore/ignored",
    "remember/remembered", "forget/forgot", "count/counted", "sort/sorted", "stack/stacked",
    "wash/washed", "dry/dried", "fill/filled", "empty/emptied", "load/loaded", "pack/packed",
    "unpack/unpacked", "label/labelled", "steal/stole", "guard/guarded", "decorate/decorated",
    "sketch/sketched", "photograph/photographed", "replace/replaced", "offer/offered", "order/ordered",
    "pick up/picked up", "put down/put down", "give away/gave away", "throw away/threw away",
    "look at/looked at", "point at/pointed at", "search for/searched for", "ask for/asked for",
)
# base form / past tense; no object.
PLAIN_VERBS = (
    "wait/waited", "sleep/slept", "rest/rested", "sing/sang", "laugh/laughed", "whistle/whistled",
    "walk/walked", "run/ran", "hurry/hurried", "wander/wandered", "stand/stood", "sit/sat", "work/worked",
    "read/read", "listen/listened", "smile/smiled", "shiver/shivered", "dance/danced", "hide/hid",
    "play/played", "swim/swam", "climb/climbed", "jump/jumped", "shout/shouted", "whisper/whispered",
    "cough/coughed", "yawn/yawned", "pause/paused", "linger/lingered", "march/marched", "kneel/knelt",
)
ADVERBS = (
    "quietly", "slowly", "quickly", "calmly", "happily", "sadly", "loudly", "softly", "gently", "carefully",
    "eagerly", "patiently", "nervously", "proudly", "politely", "silently", "bravely", "lazily", "boldly",
    "cheerfully", "anxiously", "briefly", "openly", "safely", "warmly", "wisely", "clumsily", "gladly",
)
# preposition + the + place
PLACES = (
    "near the old mill", "behind the barn", "beside the river", "under the bridge", "on the porch",
    "in the kitchen", "by the harbour", "at the station", "across the street", "inside the tent",
    "next to the church", "outside the library", "in the attic", "in the cellar", "on the hillside",
    "at the market", "behind the school", "along the canal", "near the lighthouse", "in the orchard",
    "at the edge of the forest", "on the top shelf", "in the waiting room", "at the bus stop",
    "beside the fireplace", "under the stairs", "in the back yard", "by the front door", "on the balcony",
    "in the village square", "near the post office", "at the bakery", "inside the museum", "on the ferry",
    "in the hallway", "near the pond", "on the train", "at the corner shop", "behind the curtain",
    "in the garage", "beside the well", "under the old oak", "on the beach", "in the meadow",
    "at the farm", "near the castle", "in the workshop", "by the window", "at the hotel", "in the valley",
)
TIMES = (
    "this morning", "last night", "after breakfast", "before lunch", "on Monday", "on Tuesday",
    "on Wednesday", "on Thursday", "on Friday", "on Saturday", "on Sunday", "at noon", "at midnight",
    "in the evening", "at dawn", "at dusk", "every spring", "last summer", "in the autumn",
    "during the winter", "after the storm", "before the party", "yesterday afternoon", "the next day",
    "three days ago", "last week", "at half past six", "before sunrise", "after the meeting",
    "during the holidays", "on her birthday", "on his birthday", "late in the evening", "early on",
)
NUMBERS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "twenty")
PATTERNS = (
    "The {padj} {person} {past} the {adj} {thing} {place}.",
    "{Name} {past} a {adj} {thing} {time}.",
    "A {padj} {animal} {vpast} {adverb} {place}.",
    "{Name} and {Name2} {past} the {thing} {time}.",
    "{Time}, the {person} {past} {number} {adj} {things}.",
    "The {thing} {place} was {adj} and {adj2}.",
    "{Name} {vpast} {adverb} while the {animal} {vpast2} {place}.",
    "Did the {person} {base} the {adj} {thing} {time}?",
    "The {person} will {base} the {thing} {place} {time}.",
    "Why did {Name} {base} the {adj} {thing} {place}?",
    "{Name} told the {padj} {person} to {base} the {things} {adverb}.",
    "{Time}, a {padj} {person} {vpast} {place} with a {adj} {thing}.",
    "We never {base} the {things} {place}, said the {person}.",
    "The {animal} and the {animal2} {vpast} {adverb} {time}.",
)


def plural(noun: str) -> str:
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    if noun == "knife":
        return "knives"
    return noun + "s"


def _pick(rng: np.random.Generator, words, exclude: str | None = None) -> str:
    while True:
        word = words[rng.integers(len(words))]
        if word != exclude:
            return word


def _sentence(pattern: str, rng: np.random.Generator) -> str:
    verb_base, verb_past = _pick(rng, OBJECT_VERBS).split("/")
    plain_verb = _pick(rng, PLAIN_VERBS)
    vpast = plain_verb.split("/")[1]
    vpast2 = _pick(rng, PLAIN_VERBS, plain_verb).split("/")[1]
    name = _pick(rng, NAMES)
    animal = _pick(rng, ANIMALS)
    adj = _pick(rng, ADJECTIVES)
    time_phrase = _pick(rng, TIMES)
    slots = {
        "person": _pick(rng, PEOPLE),
        "padj": _pick(rng, PEOPLE_ADJECTIVES),
        "Name": name,
        "Name2": _pick(rng, NAMES, name),
        "animal": animal,
        "animal2": _pick(rng, ANIMALS, animal),
        "thing": _pick(rng, THINGS),
        "things": plural(_pick(rng, THINGS)),
        "adj": adj,
        "adj2": _pick(rng, ADJECTIVES, adj),
        "base": verb_base,
        "past": verb_past,
        "vpast": vpast,
        "vpast2": vpast2,
        "adverb": _pick(rng, ADVERBS),
        "place": _pick(rng, PLACES),
        "time": time_phrase,
        "Time": time_phrase[0].upper() + time_phrase[1:],
        "number": _pick(rng, NUMBERS),
    }
    return re.sub(r"\b([Aa]) (?=[aeiou])", r"\1n ", pattern.format(**slots))


def template_sentences(n: int, rng: np.random.Generator) -> dict[str, str]:
    """``n`` distinct template sentences, ids t00001, ...; the same for generators in the same state, and
    the first ``m`` of them do not depend on ``n``."""
    seen: set[str] = set()
    out: dict[str, str] = {}
    while len(out) < n:
        sentence = _sentence(PATTERNS[rng.integers(len(PATTERNS))], rng)
        if sentence not in seen:
            seen.add(sentence)
            out[f"{TEMPLATE_PREFIX}{len(out) + 1:05d}"] = sentence
    return out
