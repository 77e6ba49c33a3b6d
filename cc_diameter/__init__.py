"""Sans-IO Diameter core: RFC 6733 base protocol and RFC 8506 credit control (Gy).

- `codec`: header and AVP codec (`Message`, `Avp`, `encode`, `decode`)
- `dictionary`: the AVPs known (code, vendor, type, M bit)
- `stream`: `MessageDecoder`, fed any split of bytes, with a size limit
- `base`, `cc`, `reauth`: typed views of CER/CEA, DWR/DWA, DPR/DPA, CCR/CCA, RAR/RAA
- `peer`: the responder's peer state machine (capabilities exchange, watchdog, disconnect)

Nothing here performs IO or reads a clock. Named `cc_diameter`, not `diameter`: the test
dependency python-diameter installs a top-level package of that name.
"""

from protocol import buildinfo as _buildinfo  # noqa: F401  (first: compiled or pure build)

from . import codes
from .base import Capabilities, PeerMessage, VendorApp
from .cc import Cca, Ccr, Mscc, Units
from .codec import Avp, Message, decode, encode
from .errors import AvpError, DiameterError, FramingError
from .peer import LocalPeer, PeerConfig, PeerMachine
from .reauth import Raa, Rar
from .stream import MessageDecoder

__all__ = [
    "Avp", "AvpError", "Capabilities", "Cca", "Ccr", "DiameterError", "FramingError",
    "LocalPeer", "Message", "MessageDecoder", "Mscc", "PeerConfig", "PeerMachine",
    "PeerMessage", "Raa", "Rar", "Units", "VendorApp", "codes", "decode", "encode",
]
