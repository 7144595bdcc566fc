"""The example's model code, written as competition solutions write it; `builder pack --model-code` freezes it.

    CosineNet  a cosine-classifier head (ArcFace/CosFace at inference) with GeM pooling on a timm backbone,
               served as scaled cosine logits;
    MaskNet    one backbone, three heads (mask 3, gender 2, age 3) returned as a tuple, combined by the
               runtime into 18 classes (class = mask * 6 + gender * 3 + age);
    MetaNet    image features concatenated with the image's metadata features through a small MLP.
Each constructor asks timm for ImageNet weights by default, as published solutions do; the image builds them
offline, and the trained weights replace them anyway.
"""

import timm
import torch
import torch.nn.functional as F
from torch import nn


class GeM(nn.Module):
    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p = nn.Parameter(torch.ones(1) * p)
        self.eps = eps

    def forward(self, x):
        return F.avg_pool2d(x.clamp(min=self.eps).pow(self.p), (x.size(-2), x.size(-1))).pow(1.0 / self.p).flatten(1)


class CosineNet(nn.Module):
    def __init__(self, backbone="test_resnet", num_classes=10, scale=16.0, pretrained=True):
        super().__init__()
        self.backbone = timm.create_model(backbone, pretrained=pretrained, num_classes=0, global_pool="")
        self.pool = GeM()
        self.weight = nn.Parameter(torch.randn(num_classes, self.backbone.num_features) * 0.01)
        self.scale = scale

    def forward(self, x):
        features = F.normalize(self.pool(self.backbone(x)))
        return self.scale * F.linear(features, F.normalize(self.weight))


class MaskNet(nn.Module):
    def __init__(self, backbone="test_resnet", pretrained=True):
        super().__init__()
        self.backbone = timm.create_model(backbone, pretrained=pretrained, num_classes=0)
        width = self.backbone.num_features
        self.mask, self.gender, self.age = nn.Linear(width, 3), nn.Linear(width, 2), nn.Linear(width, 3)

    def forward(self, x):
        f = self.backbone(x)
        return self.mask(f), self.gender(f), self.age(f)


class MetaNet(nn.Module):
    def __init__(self, meta_features=10, num_classes=10, backbone="test_resnet", pretrained=True):
        super().__init__()
        self.cnn = timm.create_model(backbone, pretrained=pretrained, num_classes=0)
        self.meta = nn.Sequential(nn.Linear(meta_features, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU())
        self.head = nn.Linear(self.cnn.num_features + 32, num_classes)

    def forward(self, image, meta):
        return self.head(torch.cat([self.cnn(image), self.meta(meta)], dim=1))
