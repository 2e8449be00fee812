"""Measuring a trained model: pure computation, recorded by whichever tracker is given.

- `split`: `SplitEvaluation` (one split's metrics and figures), `evaluate_split`, the validation temperature;
- `tta`: flip and ten-crop test-time augmentation, ensembles; `calibration`: ECE, NLL, temperature
  scaling, reliability diagrams; `saliency`: Grad-CAM; `mistakes`: the most confident mistakes;
  `curves`: training curves; `baseline`: did a run beat always answering the majority class;
- `evaluate`: the `fer-exp evaluate` command; `report`: `fer-exp report`, the comparison table.
"""
