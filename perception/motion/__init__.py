"""Stage between detection and tracking: the camera's own motion, from the image (`camera_motion`), and the
ego vehicle's speed and yaw rate it implies with the camera's geometry (`ego`)."""

from perception.motion.camera_motion import CameraMotion, CameraMotionEstimator

__all__ = ["CameraMotion", "CameraMotionEstimator"]
