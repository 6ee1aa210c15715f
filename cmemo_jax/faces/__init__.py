"""Face images for the teacher: the one preprocessing path of teacher training, labelling and
teacher-V evaluation (crop, resize, grey to RGB, augmentation), in jax.numpy on the device."""
from cmemo_jax.faces.preprocess import random_affine_params, teacher_inputs

__all__ = ["random_affine_params", "teacher_inputs"]
