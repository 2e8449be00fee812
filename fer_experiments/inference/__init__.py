"""Using trained models: `fer-exp predict`, `explain` and `export`.

- `faces`: image files → face crops (detection, margins, 48×48), and the helpers their outputs share;
- `detectors`: face detectors by name (OpenCV's Haar cascade, MTCNN);
- `loading`: the one model loader (logged models by URI, `.keras` files), shape-checked;
- `predict`: one row per face; `explain`: Grad-CAM overlays per face and photo;
- `export`: TFLite / ONNX files, checked against Keras before they are kept.
"""
