// platform/x86_64_decode.cpp — instruction lengths for 64-bit mode, from
// the opcode maps of the Intel SDM (volume 2, appendix A): legacy and REX
// prefixes, the one-byte map, 0F, 0F38 and 0F3A, VEX and EVEX forms, ModRM,
// SIB, displacements and immediates. Anything it does not know decodes as
// `unknown`, which its user treats as "cannot tell". Layer 1.
#include "platform/x86_64_decode.hpp"

#include <cstring>
#include <initializer_list>

namespace memlimits::platform::x86_64 {
namespace {

struct cursor {
  const unsigned char* code;
  std::size_t available;
  std::size_t at = 0;
  bool ok = true;

  unsigned char next() noexcept {
    if (at >= available) {
      ok = false;
      return 0;
    }
    return code[at++];
  }
  unsigned char peek() const noexcept { return at < available ? code[at] : 0; }
  void skip(std::size_t n) noexcept {
    if (at + n > available) ok = false;
    at += n;
  }
  std::int32_t rel32() noexcept {
    std::int32_t v = 0;
    if (at + 4 > available) {
      ok = false;
      return 0;
    }
    std::memcpy(&v, code + at, 4);
    at += 4;
    return v;
  }
};

// ModRM, SIB and displacement. Returns the ModRM's reg field.
unsigned modrm(cursor& c) noexcept {
  const unsigned m = c.next();
  const unsigned mod = m >> 6;
  const unsigned rm = m & 7;
  if (mod == 3) return (m >> 3) & 7;
  if (rm == 4) {
    const unsigned sib = c.next();
    if (mod == 0 && (sib & 7) == 5) c.skip(4);
  }
  if (mod == 0 && rm == 5) c.skip(4);  // RIP-relative
  if (mod == 1) c.skip(1);
  if (mod == 2) c.skip(4);
  return (m >> 3) & 7;
}

instruction finish(const cursor& c, std::uintptr_t, instruction::flow kind,
                   std::uintptr_t target = 0) noexcept {
  instruction out;
  if (!c.ok) return out;  // unknown
  out.length = c.at;
  out.kind = kind;
  out.target = target;
  return out;
}

bool in(unsigned op, std::initializer_list<unsigned> set) noexcept {
  for (unsigned x : set) {
    if (op == x) return true;
  }
  return false;
}

}  // namespace

instruction decode(std::uintptr_t at, std::size_t available) noexcept {
  cursor c{reinterpret_cast<const unsigned char*>(at), available < 15 ? available : 15};
  using flow = instruction::flow;
  bool operand16 = false;
  bool address32 = false;
  bool rex_w = false;
  for (;;) {
    const unsigned b = c.peek();
    if (in(b, {0xf0, 0xf2, 0xf3, 0x2e, 0x36, 0x3e, 0x26, 0x64, 0x65})) {
      c.next();
    } else if (b == 0x66) {
      operand16 = true;
      c.next();
    } else if (b == 0x67) {
      address32 = true;
      c.next();
    } else {
      break;
    }
  }
  if ((c.peek() & 0xf0) == 0x40) rex_w = (c.next() & 8) != 0;
  const unsigned imm_z = operand16 ? 2 : 4;  // 16 or 32-bit immediate
  const std::uintptr_t base = at;
  const auto relative = [&](std::int64_t displacement) {
    return base + c.at + static_cast<std::uintptr_t>(displacement);
  };

  const unsigned op = c.next();
  if (op == 0xc5 || op == 0xc4 || op == 0x62) {  // VEX (2, 3 bytes) and EVEX
    unsigned map = 1;
    if (op == 0xc5) {
      c.skip(1);
    } else if (op == 0xc4) {
      map = c.next() & 0x1f;
      c.skip(1);
    } else {
      map = c.next() & 0x07;
      c.skip(2);
    }
    c.next();  // the opcode
    if (map < 1 || map > 3) return {};
    modrm(c);
    if (map == 3) c.skip(1);
    return finish(c, at, flow::next);
  }
  if (op == 0x0f) {
    const unsigned op2 = c.next();
    if (op2 == 0x38) {
      c.next();
      modrm(c);
      return finish(c, at, flow::next);
    }
    if (op2 == 0x3a) {
      c.next();
      modrm(c);
      c.skip(1);
      return finish(c, at, flow::next);
    }
    if (op2 >= 0x80 && op2 <= 0x8f) {
      const std::int32_t d = c.rel32();
      return finish(c, at, flow::branch, relative(d));
    }
    if (op2 == 0x0b) return finish(c, at, flow::end);  // ud2
    if (in(op2, {0x05, 0x06, 0x07, 0x08, 0x09, 0x0e, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x37,
                 0x77, 0xa0, 0xa1, 0xa2, 0xa8, 0xa9, 0xaa}) ||
        (op2 >= 0xc8 && op2 <= 0xcf)) {
      return finish(c, at, flow::next);
    }
    modrm(c);
    if (in(op2, {0x70, 0x71, 0x72, 0x73, 0xa4, 0xac, 0xba, 0xc2, 0xc4, 0xc5, 0xc6})) c.skip(1);
    return finish(c, at, flow::next);
  }

  // The one-byte map.
  if (op < 0x40) {
    if ((op & 7) < 4) {
      modrm(c);
    } else if ((op & 7) == 4) {
      c.skip(1);
    } else if ((op & 7) == 5) {
      c.skip(imm_z);
    } else {
      return {};  // segment pushes, BCD: invalid in 64-bit mode
    }
    return finish(c, at, flow::next);
  }
  if (op >= 0x50 && op <= 0x5f) return finish(c, at, flow::next);
  if (op >= 0x70 && op <= 0x7f) {
    const auto d = static_cast<std::int8_t>(c.next());
    return finish(c, at, flow::branch, relative(d));
  }
  if (op >= 0x90 && op <= 0x9f && op != 0x9a) return finish(c, at, flow::next);
  if (op >= 0xb0 && op <= 0xb7) {
    c.skip(1);
    return finish(c, at, flow::next);
  }
  if (op >= 0xb8 && op <= 0xbf) {
    c.skip(rex_w ? 8 : imm_z);
    return finish(c, at, flow::next);
  }
  if (op >= 0xd8 && op <= 0xdf) {  // x87
    modrm(c);
    return finish(c, at, flow::next);
  }
  switch (op) {
    case 0x63: case 0x84: case 0x85: case 0x86: case 0x87: case 0x88: case 0x89: case 0x8a:
    case 0x8b: case 0x8c: case 0x8d: case 0x8e: case 0x8f: case 0xd0: case 0xd1: case 0xd2:
    case 0xd3: case 0xfe:
      modrm(c);
      return finish(c, at, flow::next);
    case 0x68: c.skip(imm_z); return finish(c, at, flow::next);
    case 0x6a: c.skip(1); return finish(c, at, flow::next);
    case 0x69: modrm(c); c.skip(imm_z); return finish(c, at, flow::next);
    case 0x6b: case 0x80: case 0x83: case 0xc0: case 0xc1: case 0xc6:
      modrm(c);
      c.skip(1);
      return finish(c, at, flow::next);
    case 0x81: case 0xc7:
      modrm(c);
      c.skip(imm_z);
      return finish(c, at, flow::next);
    case 0x6c: case 0x6d: case 0x6e: case 0x6f: case 0xa4: case 0xa5: case 0xa6: case 0xa7:
    case 0xaa: case 0xab: case 0xac: case 0xad: case 0xae: case 0xaf: case 0xc9: case 0xec:
    case 0xed: case 0xee: case 0xef: case 0xf5: case 0xf8: case 0xf9: case 0xfa: case 0xfb:
    case 0xfc: case 0xfd:
      return finish(c, at, flow::next);
    case 0xa0: case 0xa1: case 0xa2: case 0xa3: c.skip(address32 ? 4 : 8); return finish(c, at, flow::next);
    case 0xa8: case 0xe4: case 0xe5: case 0xe6: case 0xe7: case 0xcd:
      c.skip(1);
      return finish(c, at, flow::next);
    case 0xa9: c.skip(imm_z); return finish(c, at, flow::next);
    case 0xc8: c.skip(3); return finish(c, at, flow::next);
    case 0xc2: case 0xca: c.skip(2); return finish(c, at, flow::end);
    case 0xc3: case 0xcb: case 0xcc: case 0xcf: case 0xf4: return finish(c, at, flow::end);
    case 0xe0: case 0xe1: case 0xe2: case 0xe3: {
      const auto d = static_cast<std::int8_t>(c.next());
      return finish(c, at, flow::branch, relative(d));
    }
    case 0xe8: {
      const std::int32_t d = c.rel32();
      return finish(c, at, flow::call, relative(d));
    }
    case 0xe9: {
      const std::int32_t d = c.rel32();
      return finish(c, at, flow::jump, relative(d));
    }
    case 0xeb: {
      const auto d = static_cast<std::int8_t>(c.next());
      return finish(c, at, flow::jump, relative(d));
    }
    case 0xf6: case 0xf7: {
      const unsigned reg = modrm(c);
      if (reg < 2) c.skip(op == 0xf6 ? 1 : imm_z);
      return finish(c, at, flow::next);
    }
    case 0xff: {
      const unsigned reg = modrm(c);
      if (reg == 4 || reg == 5) return {};  // indirect jump: cannot follow
      return finish(c, at, flow::next);     // inc, dec, indirect call, push
    }
    default:
      return {};
  }
}

}  // namespace memlimits::platform::x86_64
