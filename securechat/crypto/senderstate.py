# -*- test-case-name: tests.test_senderkeys -*-
"""
The receiver's side of sender keys (docs/protocol.rst, 16.4): one
L{SenderKeyState} per (group, sender).

It holds the sender's chains that reached us in distributions (at most
C{max_chains}; an older one is retired), and for each chain the next
counter and its chain key, plus the message keys of counters skipped on the
way (at most C{max_skipped} per chain, oldest given up first).  Opening a
message at counter C{n}:

  - C{n} is the next counter: opened;
  - C{n} is further on: the chain moves forward to it (at most C{max_skip}
    steps, C{too-far-ahead} beyond), the skipped counters' keys are kept,
    and the result reports the I{gap} (a drop, or a reordering that the
    late message will show);
  - C{n} is behind: the key kept for it opens it (reported as I{late}:
    reordered), or it is C{replayed} (opened before), C{key-expired} (older
    than the oldest kept key), C{before-key} (older than the chain we were
    given: a new member cannot read what came before it).

A message for a chain we do not have yet is I{held} (at most C{max_held};
the oldest is given up, and reported, to make room) and opened when the
distribution comes.  Nothing moves unless the message opens: a refused
message changes no state.

Pure: no IO, no clock.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from securechat.crypto.senderkeys import (
    GroupKeyError,
    GroupMessage,
    MessageKey,
    OpenedGroupMessage,
    SenderKeyDistribution,
    check_envelope,
    decrypt_group_message,
    message_key,
    next_chain_key,
    parse_distribution,
    parse_group_message,
    verify_group_signature,
)

#: The most counters one message may skip.
MAX_SKIP = 1000
#: The most skipped message keys kept per chain.
MAX_SKIPPED = 2000
#: The most messages held while their chain has not arrived.
MAX_HELD = 200
#: The most chains kept per sender.
MAX_CHAINS = 4
_MAX_RETIRED = 64

#: What the caller keeps with a held message (the relay's seq and
#: stored_at, for the client), returned when it is released.
Tag = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Opened:
    """
    A message that opened.  C{gap} is C{(first, count)} when counters
    C{first} .. C{first + count - 1} were skipped to reach it (not arrived
    yet: dropped or reordered); C{late} is true when it fills such a gap
    (it arrived out of order).
    """

    message: OpenedGroupMessage
    gap: tuple[int, int] | None = None
    late: bool = False


@dataclass(frozen=True, slots=True)
class Held:
    """
    A message held until its sender's chain arrives.  C{given_up} is an
    older held message dropped to make room (to be reported, never lost
    silently), or None.
    """

    message: GroupMessage
    given_up: GroupMessage | None = None
    given_up_tag: Tag = (0, 0)


@dataclass(frozen=True, slots=True)
class Released:
    """
    A held message, opened or refused now that its chain came, with the
    C{tag} it was held with.
    """

    message: GroupMessage
    result: Opened | GroupKeyError
    tag: Tag = (0, 0)


@dataclass(slots=True)
class ReceiverChain:
    """
    One chain of the sender as we know it: the counter and key of the
    next message (C{next}, C{chain_key}), the first counter we were given
    (C{start}), skipped keys, and the lowest counter whose skipped key may
    still be here (C{floor}).
    """

    distribution: SenderKeyDistribution
    next: int
    chain_key: bytes
    skipped: OrderedDict[int, MessageKey] = field(default_factory=OrderedDict)
    floor: int = 0

    @classmethod
    def from_distribution(cls, dist: SenderKeyDistribution) -> ReceiverChain:
        return cls(dist, dist.counter, dist.chain_key, OrderedDict(), dist.counter)

    @property
    def start(self) -> int:
        return self.distribution.counter


@dataclass(frozen=True, slots=True)
class _Step:
    """What opening one message would change, applied only once it opened."""

    key: MessageKey
    late: bool
    gap: tuple[int, int] | None
    new_skipped: tuple[tuple[int, MessageKey], ...] = ()
    new_next: int | None = None
    new_chain_key: bytes | None = None


class SenderKeyState:
    """
    What we know of one sender's chains in one group (see the module
    docstring).
    """

    def __init__(self, group_id: bytes, sender: str, *, max_skip: int = MAX_SKIP,
                 max_skipped: int = MAX_SKIPPED, max_held: int = MAX_HELD,
                 max_chains: int = MAX_CHAINS) -> None:
        self.group_id = group_id
        self.sender = sender
        self.max_skip = max_skip
        self.max_skipped = max_skipped
        self.max_held = max_held
        self.max_chains = max_chains
        self.chains: OrderedDict[int, ReceiverChain] = OrderedDict()
        self.retired: deque[int] = deque(maxlen=_MAX_RETIRED)
        self.held: list[tuple[GroupMessage, int, Tag]] = []

    # -- distributions --------------------------------------------------------

    def add_chain(self, dist: SenderKeyDistribution) -> list[Released]:
        """
        Take a chain of this sender from a distribution (the letter that
        carried it was from this sender, and checked), and open the
        messages held for it, in the order they came.

        @raise GroupKeyError: C{wrong-group}, C{retired-chain} (a chain
            this state gave up), C{chain-conflict} (another signing key or
            epoch under a chain id we hold; the first stands).  The same
            chain again, at any counter, changes nothing (its owner may send
            it again, e.g. after a restart).
        """
        if dist.group_id != self.group_id:
            raise GroupKeyError("wrong-group", "a sender key for another group")
        if dist.chain_id in self.retired:
            raise GroupKeyError("retired-chain", f"{self.sender}'s chain {dist.chain_id} was replaced")
        known = self.chains.get(dist.chain_id)
        if known is not None:
            first = known.distribution
            if (first.signing_public, first.epoch) != (dist.signing_public, dist.epoch):
                raise GroupKeyError("chain-conflict",
                                    f"{self.sender} sent another key for chain {dist.chain_id}")
            return []
        self.chains[dist.chain_id] = ReceiverChain.from_distribution(dist)
        while len(self.chains) > self.max_chains:
            old_id, _ = self.chains.popitem(last=False)
            self.retired.append(old_id)
        waiting = [h for h in self.held if h[0].header.chain_id == dist.chain_id]
        self.held = [h for h in self.held if h[0].header.chain_id != dist.chain_id]
        released = []
        for message, rekey_epoch, tag in waiting:
            result: Opened | GroupKeyError
            try:
                result = self._open(self.chains[dist.chain_id], message, rekey_epoch)
            except GroupKeyError as e:
                result = e
            released.append(Released(message, result, tag))
        return released

    # -- messages -------------------------------------------------------------

    def receive(self, message: GroupMessage, *, rekey_epoch: int = 0, tag: Tag = (0, 0)) -> Opened | Held:
        """
        Open a message the relay delivered from this sender in this group,
        or hold it until its chain comes.  C{rekey_epoch} is the latest
        epoch, at or before the message's, in which a member was removed or
        left (0 if none): a chain made before it must not be used any more.
        C{tag} is kept with a held message and given back on release.

        Checks, in order (16.4): the envelope, the chain (held if unknown),
        the epochs, the signature, the counter, decryption, the content.

        @raise GroupKeyError: C{wrong-group}, C{wrong-sender},
            C{retired-chain}, C{wrong-epoch}, C{stale-chain},
            C{bad-signature}, C{before-key}, C{replayed}, C{key-expired},
            C{too-far-ahead}, C{decrypt-failed}, C{bad-content}.
        """
        check_envelope(message, self.group_id, self.sender)
        chain_id = message.header.chain_id
        if chain_id in self.retired:
            raise GroupKeyError("retired-chain", f"{self.sender}'s chain {chain_id} was replaced")
        chain = self.chains.get(chain_id)
        if chain is None:
            given_up: tuple[GroupMessage | None, int, Tag] = (None, 0, (0, 0))
            if len(self.held) >= self.max_held:
                given_up = self.held.pop(0)
            self.held.append((message, rekey_epoch, tag))
            return Held(message, given_up[0], given_up[2])
        return self._open(chain, message, rekey_epoch)

    # -- keeping it --------------------------------------------------------------

    def to_record(self) -> dict[str, Any]:
        """
        Everything this state holds, as JSON-able values (bytes in hex),
        for the client's store; L{from_record} is the inverse.
        """
        return {
            "group_id": self.group_id.hex(),
            "sender": self.sender,
            "chains": [{"distribution": c.distribution.encode().hex(), "next": c.next,
                        "chain_key": c.chain_key.hex(), "floor": c.floor,
                        "skipped": [[n, k.key.hex(), k.nonce.hex()] for n, k in c.skipped.items()]}
                       for c in self.chains.values()],
            "retired": list(self.retired),
            "held": [[m.encode().hex(), r, list(t)] for m, r, t in self.held],
        }

    @classmethod
    def from_record(cls, record: dict[str, Any], **limits: int) -> SenderKeyState:
        """A state from L{to_record}'s output (with C{limits} as in the constructor)."""
        state = cls(bytes.fromhex(record["group_id"]), record["sender"], **limits)
        for c in record["chains"]:
            dist = parse_distribution(bytes.fromhex(c["distribution"]))
            skipped = OrderedDict((int(n), MessageKey(bytes.fromhex(k), bytes.fromhex(v)))
                                  for n, k, v in c["skipped"])
            state.chains[dist.chain_id] = ReceiverChain(dist, int(c["next"]), bytes.fromhex(c["chain_key"]),
                                                        skipped, int(c["floor"]))
        state.retired.extend(int(i) for i in record["retired"])
        state.held = [(parse_group_message(bytes.fromhex(m)), int(r), (int(t[0]), int(t[1])))
                      for m, r, t in record["held"]]
        return state

    @property
    def waiting(self) -> int:
        """How many messages are held for a chain not yet here."""
        return len(self.held)

    def _open(self, chain: ReceiverChain, message: GroupMessage, rekey_epoch: int) -> Opened:
        header = message.header
        dist = chain.distribution
        if header.epoch < dist.epoch:
            raise GroupKeyError("wrong-epoch", f"a message of epoch {header.epoch} under a chain of "
                                f"epoch {dist.epoch}")
        if dist.epoch < rekey_epoch:
            raise GroupKeyError("stale-chain", f"{self.sender} used a chain from before a member left "
                                f"(chain epoch {dist.epoch}, member left at {rekey_epoch})")
        verify_group_signature(message, dist.signing_public)
        step = self._step(chain, header.counter)
        opened = decrypt_group_message(message, step.key)
        self._apply(chain, header.counter, step)
        return Opened(opened, step.gap, step.late)

    def _step(self, chain: ReceiverChain, counter: int) -> _Step:
        if counter < chain.start:
            raise GroupKeyError("before-key", f"counter {counter} is before the key we were given "
                                f"({chain.start}): sent before we could read this chain")
        if counter < chain.next:
            kept = chain.skipped.get(counter)
            if kept is not None:
                return _Step(kept, True, None)
            if counter < chain.floor:
                raise GroupKeyError("key-expired", f"counter {counter} is older than the oldest key kept "
                                    f"({chain.floor})")
            raise GroupKeyError("replayed", f"counter {counter} of chain {chain.distribution.chain_id} "
                                "was already opened")
        skip = counter - chain.next
        if skip > self.max_skip:
            raise GroupKeyError("too-far-ahead", f"counter {counter} skips {skip} messages, "
                                f"the most is {self.max_skip}")
        chain_key = chain.chain_key
        skipped = []
        for n in range(chain.next, counter):
            skipped.append((n, message_key(chain_key)))
            chain_key = next_chain_key(chain_key)
        gap = (chain.next, skip) if skip else None
        return _Step(message_key(chain_key), False, gap, tuple(skipped), counter + 1,
                     next_chain_key(chain_key))

    def _apply(self, chain: ReceiverChain, counter: int, step: _Step) -> None:
        if step.late:
            del chain.skipped[counter]
            return
        assert step.new_next is not None and step.new_chain_key is not None
        chain.skipped.update(step.new_skipped)
        chain.next, chain.chain_key = step.new_next, step.new_chain_key
        while len(chain.skipped) > self.max_skipped:
            given_up, _ = chain.skipped.popitem(last=False)
            chain.floor = max(chain.floor, given_up + 1)
