"""A small English grammar for the synthesized corpus.

Sentences are 3-15 words over a vocabulary of several hundred words, with enough
structure (subjects, verbs, objects, places, times, questions, commands, coordination)
that an n-gram LM helps but does not solve the task. Everything is drawn from a
caller's ``random.Random``, so a seed fixes the text.
"""

import random
from typing import Callable

NAMES = """alice bob carol david emma frank grace henry irene jack karen louis maria nathan olivia peter
quinn rachel simon tina victor wendy oscar paula""".split()
NOUNS = """apple basket bicycle bottle bridge brother camera candle captain castle chair cheese child
church clock cloud coat computer cousin dancer desk doctor dog door dragon drawer engine farmer
feather flower forest friend garden guitar hammer harbor horse hospital island jacket kettle kitchen
ladder lamp letter library lion machine market mirror monkey mountain needle nurse ocean orange
painter parrot pencil piano pilot planet pocket poet potato queen rabbit river robot sailor
scientist shadow sheep shoe singer soldier spoon station storm student sugar table teacher ticket
tiger tower train tree truck umbrella village violin wagon wallet window wizard""".split()
PLURALS = """apples baskets bottles candles chairs children clocks coats dogs doors flowers friends horses
lamps letters machines mirrors oranges pencils potatoes rabbits sheep shoes spoons students tables
tickets trees trucks windows books boxes cakes coins eggs gifts keys maps songs stones""".split()
ADJECTIVES = """angry big bright broken busy careful cheap clean clever cold dark dirty empty famous fast
friendly gentle golden green happy heavy honest hungry little loud lucky modern new noisy old
patient polite quiet rich round shiny short silent small strange strong sweet tall tiny warm wet
wild wise wooden yellow young""".split()
VERBS_TRANSITIVE = """bought borrowed brought built carried cleaned collected cooked copied counted delivered
dropped fixed found followed helped hid kept lifted lost moved opened packed painted picked pulled
pushed repaired sold shared showed sent stole touched visited washed watched wanted wrapped""".split()
VERBS_BASE = """buy borrow bring build carry clean collect cook count deliver fix find follow help hide
keep lift move open pack paint pick pull push repair sell share show send touch visit wash watch
wrap""".split()
VERBS_INTRANSITIVE = """arrived danced disappeared escaped fell laughed left listened rested ran sang slept
smiled snored spoke stayed swam waited walked whistled worked""".split()
ADVERBS = """quickly slowly quietly loudly happily sadly carefully suddenly gently badly early late
again today yesterday together alone""".split()
PREPOSITIONS = "near behind under above beside inside outside across through toward past beyond".split()
PLACES = """station market harbor library garden castle forest river village kitchen hospital church
bridge island tower school museum bakery factory airport farm beach park hotel office""".split()
TIME_PHRASES = [
    "on monday", "on tuesday", "on wednesday", "on thursday", "on friday", "on saturday", "on sunday",
    "in the morning", "in the evening", "at night", "at noon", "after dinner", "before breakfast",
    "last week", "next winter", "every summer", "in april", "in october",
]
NUMBERS = "two three four five six seven eight nine ten eleven twelve twenty".split()
DETERMINERS = "the a this that every my your his her our their".split()
QUESTION_AUX = "did will could should".split()
CONNECTIVES = "and but because while so".split()

class SentenceGrammar:
    """Draws sentences from the grammar; ``vocabulary()`` lists every word it can emit."""

    def __init__(self, min_words: int = 3, max_words: int = 15):
        if not 1 <= min_words <= max_words:
            raise ValueError(f"need 1 <= min_words <= max_words, got {min_words}, {max_words}")
        self.min_words = min_words
        self.max_words = max_words

    def noun_phrase(self, rng: random.Random) -> str:
        kind = rng.random()
        if kind < 0.2:
            return rng.choice(NAMES)
        if kind < 0.35:
            adj = f" {rng.choice(ADJECTIVES)}" if rng.random() < 0.5 else ""
            return f"{rng.choice(NUMBERS)}{adj} {rng.choice(PLURALS)}"
        adj = f"{rng.choice(ADJECTIVES)} " if rng.random() < 0.5 else ""
        return f"{rng.choice(DETERMINERS)} {adj}{rng.choice(NOUNS)}"

    def place(self, rng: random.Random) -> str:
        return f"{rng.choice(PREPOSITIONS)} the {rng.choice(PLACES)}"

    def clause(self, rng: random.Random) -> str:
        subject = self.noun_phrase(rng)
        if rng.random() < 0.65:
            parts = [subject, rng.choice(VERBS_TRANSITIVE), self.noun_phrase(rng)]
        else:
            parts = [subject, rng.choice(VERBS_INTRANSITIVE)]
            if rng.random() < 0.5:
                parts.append(rng.choice(ADVERBS))
        if rng.random() < 0.4:
            parts.append(self.place(rng))
        if rng.random() < 0.3:
            parts.append(rng.choice(TIME_PHRASES))
        return " ".join(parts)

    def question(self, rng: random.Random) -> str:
        tail = f" {self.place(rng)}" if rng.random() < 0.4 else ""
        return f"{rng.choice(QUESTION_AUX)} {self.noun_phrase(rng)} {rng.choice(VERBS_BASE)} {self.noun_phrase(rng)}{tail}"

    def command(self, rng: random.Random) -> str:
        tail = f" {rng.choice(TIME_PHRASES)}" if rng.random() < 0.4 else ""
        return f"please {rng.choice(VERBS_BASE)} {self.noun_phrase(rng)}{tail}"

    def sentence(self, rng: random.Random) -> str:
        """One sentence of ``min_words``..``max_words`` words (redrawn until it fits)."""
        makers: list[tuple[float, Callable[[random.Random], str]]] = [
            (0.6, self.clause), (0.15, self.question), (0.1, self.command), (0.15, self._compound),
        ]
        while True:
            r, acc = rng.random(), 0.0
            for weight, make in makers:
                acc += weight
                if r < acc:
                    break
            text = make(rng)
            if self.min_words <= len(text.split()) <= self.max_words:
                return text

    def _compound(self, rng: random.Random) -> str:
        return f"{self.clause(rng)} {rng.choice(CONNECTIVES)} {self.clause(rng)}"

    @staticmethod
    def vocabulary() -> set[str]:
        words: set[str] = set()
        for group in (NAMES, NOUNS, PLURALS, ADJECTIVES, VERBS_TRANSITIVE, VERBS_BASE, VERBS_INTRANSITIVE,
                      ADVERBS, PREPOSITIONS, NUMBERS, DETERMINERS, QUESTION_AUX, CONNECTIVES,
                      TIME_PHRASES, PLACES, ["please", "the"]):
            for phrase in group:
                words.update(phrase.split())
        return words
