import Foundation
import GraftData
import XCTest

/// The clips made by Tools/make_video_fixtures.py with the installed ffmpeg, and what ffprobe and
/// `ffmpeg -pix_fmt rgb24` said about them.
enum VideoFixtures {
  static let folder = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
  static let clips = folder.appendingPathComponent("clips")

  /// One clip's entry in clips.json.
  struct Clip: Decodable {
    var codec: String
    var width: Int
    var height: Int
    var container_frames: Int
    var decoded_frames: Int
    var fps: Double
    var duration: Double
    var rotation: Int
    var times: [Double]
  }

  static let table: [String: Clip] = {
    let data = try! Data(contentsOf: folder.appendingPathComponent("clips.json"))
    return try! JSONDecoder().decode([String: Clip].self, from: data)
  }()

  static func url(_ name: String) -> URL { clips.appendingPathComponent(name) }

  /// ffmpeg's rgb24 frames of `name`, [frames × height × width × 3] bytes.
  static func reference(_ name: String) throws -> [UInt8] {
    try ImageCodec.decode(contentsOf: clips.appendingPathComponent(name + ".rgb.png")).pixels
  }

  /// Frame `i` of a reference.
  static func frame(_ reference: [UInt8], _ i: Int, of clip: Clip) -> ArraySlice<UInt8> {
    let size = clip.width * clip.height * 3
    return reference[(i * size)..<((i + 1) * size)]
  }

  /// A fresh temporary folder, removed after the test.
  static func temporaryFolder(_ test: XCTestCase) throws -> URL {
    let folder = FileManager.default.temporaryDirectory
      .appendingPathComponent("graft-video-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: folder) }
    return folder
  }
}
