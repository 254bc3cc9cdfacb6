/// LZF, the byte-oriented LZ77 compression PCL uses for `binary_compressed` PCD data, written
/// from the format's definition (liblzf's stream format).
///
/// A stream is a sequence of runs, each starting with a control byte `c`:
/// - `c < 32`: a literal run; the next `c + 1` bytes are copied to the output.
/// - otherwise a back reference: length `L = c >> 5` (when 7, one more byte is added to it), then
///   one byte `b`; the output copies `L + 2` bytes starting `((c & 31) << 8) + b + 1` bytes back
///   (3...264 bytes, up to 8192 back; the copy may overlap what it writes).
public enum LZF {
  /// The largest ratio of output to input LZF can reach (a 3-byte reference to 264 bytes); a
  /// claimed decompressed size beyond it is refused before allocating.
  public static let maxExpansion = 88

  /// A malformed LZF stream.
  public struct DecodeError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The problem, in words.
    public let description: String
  }

  /// Compresses `input` (greedy matching through a hash of the next three bytes).
  public static func compress(_ input: UnsafeRawBufferPointer) -> [UInt8] {
    let n = input.count
    var out = [UInt8]()
    out.reserveCapacity(n + n / 32 + 2)
    guard n > 0, let src = input.baseAddress?.assumingMemoryBound(to: UInt8.self) else {
      return out
    }
    let hashBits = 14
    var table = [Int32](repeating: -1, count: 1 << hashBits)
    var literalStart = out.count  // index of the pending literal run's control byte
    out.append(0)
    var literals = 0

    @inline(__always) func hash(_ i: Int) -> Int {
      let v = UInt32(src[i]) << 16 | UInt32(src[i + 1]) << 8 | UInt32(src[i + 2])
      return Int((v &* 2_654_435_761) >> UInt32(32 - hashBits))
    }

    var i = 0
    while i < n {
      if i + 2 < n {
        let h = hash(i)
        let ref = Int(table[h])
        table[h] = Int32(i)
        let offset = i - ref - 1
        if ref >= 0, offset < 8192, src[ref] == src[i], src[ref + 1] == src[i + 1],
          src[ref + 2] == src[i + 2]
        {
          let maxLength = min(264, n - i)
          var length = 3
          while length < maxLength, src[ref + length] == src[i + length] { length += 1 }
          // Close the pending literal run (or drop its unused control byte).
          if literals > 0 {
            out[literalStart] = UInt8(literals - 1)
          } else {
            out.removeLast()
          }
          let l = length - 2
          if l < 7 {
            out.append(UInt8(l << 5 | offset >> 8))
          } else {
            out.append(UInt8(7 << 5 | offset >> 8))
            out.append(UInt8(l - 7))
          }
          out.append(UInt8(offset & 0xFF))
          // Index the positions inside the match too, so later repeats find them.
          var j = i + 1
          while j < i + length, j + 2 < n {
            table[hash(j)] = Int32(j)
            j += 1
          }
          i += length
          literalStart = out.count
          out.append(0)
          literals = 0
          continue
        }
      }
      out.append(src[i])
      literals += 1
      i += 1
      if literals == 32 {
        out[literalStart] = 31
        literalStart = out.count
        out.append(0)
        literals = 0
      }
    }
    if literals > 0 {
      out[literalStart] = UInt8(literals - 1)
    } else {
      out.removeLast()
    }
    return out
  }

  /// Decompresses `input`, which must decode to exactly `count` bytes.
  public static func decompress(_ input: UnsafeRawBufferPointer, count: Int) throws(DecodeError)
    -> [UInt8]
  {
    var out = [UInt8](repeating: 0, count: count)
    let n = input.count
    if n == 0 {
      if count == 0 { return out }
      throw DecodeError(description: "empty compressed data for \(count) bytes")
    }
    let src = input.baseAddress!.assumingMemoryBound(to: UInt8.self)
    var ip = 0
    var op = 0
    try out.withUnsafeMutableBufferPointer { (dst) throws(DecodeError) in
      while ip < n {
        let c = Int(src[ip])
        ip += 1
        if c < 32 {
          let length = c + 1
          guard ip + length <= n else {
            throw DecodeError(
              description: "compressed data ends inside a literal run at byte \(ip)")
          }
          guard op + length <= count else {
            throw DecodeError(description: "decodes to more than \(count) bytes")
          }
          for k in 0..<length { dst[op + k] = src[ip + k] }
          ip += length
          op += length
        } else {
          var length = c >> 5
          if length == 7 {
            guard ip < n else {
              throw DecodeError(description: "compressed data ends inside a back reference")
            }
            length += Int(src[ip])
            ip += 1
          }
          length += 2
          guard ip < n else {
            throw DecodeError(description: "compressed data ends inside a back reference")
          }
          let back = ((c & 0x1F) << 8) + Int(src[ip]) + 1
          ip += 1
          guard back <= op else {
            throw DecodeError(
              description: "back reference before the start of the output at byte \(ip)")
          }
          guard op + length <= count else {
            throw DecodeError(description: "decodes to more than \(count) bytes")
          }
          // Byte by byte: the source may overlap the bytes being written (run-length copies).
          for k in 0..<length { dst[op + k] = dst[op - back + k] }
          op += length
        }
      }
    }
    guard op == count else {
      throw DecodeError(description: "decodes to \(op) bytes, the header says \(count)")
    }
    return out
  }
}
