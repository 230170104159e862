"""EffNet Lab core: EfficientNet models, weights, data, training, inference and scaling math.

A plain Python package (it never imports streamlit). The Streamlit pages and the command line
(``python -m core ...``) both call these modules. Heavy modules (Keras/TensorFlow) are imported
lazily by each concept module, so ``core.models.scaling`` stays importable without TensorFlow.
"""

__version__ = "0.1.0"
