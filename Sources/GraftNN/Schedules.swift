import Foundation

/// A learning rate as a function of the optimizer step (0-based: the lr used by update `step`).
public protocol LearningRateSchedule {
  /// The peak (base) learning rate the schedule is built around.
  var baseLR: Float { get }
  /// The learning rate for update number `step`.
  func lr(at step: Int) -> Float
}

extension LearningRateSchedule {
  /// `lr(at:) / baseLR`: the multiplier to apply to each parameter group's own rate (so a group
  /// with twice the base rate keeps twice the scheduled rate). 0 when `baseLR` is 0.
  public func factor(at step: Int) -> Float {
    baseLR == 0 ? 0 : lr(at: step) / baseLR
  }
}

/// Linear warm-up then a half-cosine decay, as Hugging Face's
/// `get_cosine_with_min_lr_schedule_with_warmup` (`get_cosine_schedule_with_warmup` when
/// `minLR` is 0):
///
///     step < warmup:  warmupStartLR + (baseLR − warmupStartLR) · step / warmupSteps
///     otherwise:      minLR + (baseLR − minLR) · ½(1 + cos(π · progress)),
///                     progress = (step − warmupSteps) / (totalSteps − warmupSteps), at most 1
///
/// so the rate is `warmupStartLR` at step 0, `baseLR` at `warmupSteps`, halfway between
/// `baseLR` and `minLR` midway through the decay, and `minLR` from `totalSteps` on.
public struct CosineSchedule: LearningRateSchedule, Sendable {
  /// Peak learning rate, reached at the end of warm-up.
  public var baseLR: Float
  /// Steps of linear warm-up.
  public var warmupSteps: Int
  /// Step at which the decay reaches `minLR`.
  public var totalSteps: Int
  /// Floor of the decay.
  public var minLR: Float
  /// Rate at step 0 of the warm-up.
  public var warmupStartLR: Float

  /// A warm-up + cosine schedule.
  public init(
    baseLR: Float, warmupSteps: Int, totalSteps: Int, minLR: Float = 0, warmupStartLR: Float = 0
  ) {
    precondition(warmupSteps >= 0 && totalSteps >= warmupSteps, "need 0 ≤ warmup ≤ total steps")
    self.baseLR = baseLR
    self.warmupSteps = warmupSteps
    self.totalSteps = totalSteps
    self.minLR = minLR
    self.warmupStartLR = warmupStartLR
  }

  /// The rate for update `step`.
  public func lr(at step: Int) -> Float {
    let (base, start, floor) = (Double(baseLR), Double(warmupStartLR), Double(minLR))
    if step < warmupSteps {
      return Float(start + (base - start) * Double(max(step, 0)) / Double(warmupSteps))
    }
    let span = max(totalSteps - warmupSteps, 1)
    let progress = min(Double(step - warmupSteps) / Double(span), 1)
    return Float(floor + (base - floor) * 0.5 * (1 + cos(Double.pi * progress)))
  }
}

/// Decay by `gamma` every `stepSize` steps, as PyTorch's `StepLR`:
/// `baseLR · gamma^⌊step / stepSize⌋`.
public struct StepSchedule: LearningRateSchedule, Sendable {
  /// Rate for the first `stepSize` steps.
  public var baseLR: Float
  /// Steps between decays.
  public var stepSize: Int
  /// Multiplier applied at each decay.
  public var gamma: Float

  /// A step schedule.
  public init(baseLR: Float, stepSize: Int, gamma: Float = 0.1) {
    precondition(stepSize > 0, "StepSchedule stepSize must be positive")
    self.baseLR = baseLR
    self.stepSize = stepSize
    self.gamma = gamma
  }

  /// The rate for update `step`.
  public func lr(at step: Int) -> Float {
    Float(Double(baseLR) * Foundation.pow(Double(gamma), Double(max(step, 0) / stepSize)))
  }
}

/// The learning-rate schedules a run can choose (`optim.schedule`).
public enum ScheduleKind: String, CaseIterable, Sendable {
  /// Linear warm-up then half-cosine decay to the floor (`CosineSchedule`).
  case cosine
  /// Linear warm-up then the peak rate throughout.
  case constant
}
