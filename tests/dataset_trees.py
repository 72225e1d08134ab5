"""Tiny trees in each dataset's real on-disk layout — folder structure, file names, image formats and label encodings
as the datasets ship them — written here independently of the library (which has its own writer for examples), so a
wrong idea of a format in the library does not go unnoticed by the tests."""
import json, struct, zlib
from pathlib import Path
import numpy as np
from PIL import Image

RNG = np.random.default_rng(1234)


def rgb(h, w):
    "A smooth-ish RGB image."
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x*255//max(w - 1, 1), y*255//max(h - 1, 1), (x + y)*127//max(h + w - 2, 1)], -1)
    return np.clip(img + RNG.integers(0, 30, (h, w, 3)), 0, 255).astype(np.uint8)


def save(path, arr, mode=None, **kw):
    path = Path(path); path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode).save(path, **kw) if mode else Image.fromarray(arr).save(path, **kw)
    return path


def png16(path, arr):
    "A 16-bit PNG (gray, RGB or RGBA) written by hand; rows alternate the 'None' and 'Sub' filters like real encoders do."
    a = np.asarray(arr, np.uint16)
    if a.ndim == 2: a = a[..., None]
    h, w, c = a.shape
    bpp, rows = 2*c, []
    for y in range(h):
        raw = np.frombuffer(a[y].astype('>u2').tobytes(), np.uint8)
        if y % 2:
            sub = raw.copy(); sub[bpp:] = (raw[bpp:].astype(np.int16) - raw[:-bpp]) % 256
            rows.append(b'\x01' + sub.astype(np.uint8).tobytes())
        else: rows.append(b'\x00' + raw.tobytes())
    chunk = lambda t, d: struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
    ihdr = struct.pack('>IIBBBBB', w, h, 16, {1: 0, 3: 2, 4: 6}[c], 0, 0, 0)
    path = Path(path); path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', zlib.compress(b''.join(rows))) + chunk(b'IEND', b''))
    return path


def label_from(values, h, w, corner=()):
    "A random label of `values`, with the first pixels of the top row set to `corner` (for exact checks)."
    lab = RNG.choice(np.asarray(values), (h, w)).astype(np.uint8)
    lab[0, :len(corner)] = corner
    return lab


CS_CORNER = (7, 8, 26, 33, 0, 9, 22, 23, 31, 3)      # road, sidewalk, car, bicycle, unlabeled, parking, terrain, sky, train, out of roi


def cityscapes(root, cities={'train': {'aachen': 2, 'bochum': 1}, 'val': {'frankfurt': 2}}, size=(32, 64)):
    "leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png and the four gtFine files of each frame."
    root, h, w = Path(root), *size
    for split, cs in cities.items():
        for city, n in cs.items():
            for k in range(n):
                stem = f'{city}_{k:06d}_{19 + 4*k:06d}'
                save(root/'leftImg8bit'/split/city/f'{stem}_leftImg8bit.png', rgb(h, w))
                lab = label_from(range(34), h, w, CS_CORNER)
                save(root/'gtFine'/split/city/f'{stem}_gtFine_labelIds.png', lab, 'L')
                save(root/'gtFine'/split/city/f'{stem}_gtFine_color.png', RNG.integers(0, 255, (h, w, 4), dtype=np.uint8))
                png16(root/'gtFine'/split/city/f'{stem}_gtFine_instanceIds.png', lab.astype(np.uint16)*1000)   # 16-bit gray
                (root/'gtFine'/split/city/f'{stem}_gtFine_polygons.json').write_text(json.dumps(dict(imgHeight=h, imgWidth=w, objects=[])))
    return root


def voc(root, train=('2007_000032', '2007_000039', '2008_000002', '2009_000123'), val=('2007_000033', '2010_000005')):
    "VOCdevkit/VOC2012: JPEGImages/*.jpg, SegmentationClassAug/*.png (gray), SegmentationClass/*.png (palette), ImageSets/Segmentation/*.txt."
    root = Path(root)
    pal = np.zeros((256, 3), np.uint8); pal[:21] = RNG.integers(0, 255, (21, 3)); pal[255] = 224
    for i, vid in enumerate(train + val):
        h, w = (40 + 7*i, 60 - 3*i)                                       # VOC images differ in size
        save(root/'JPEGImages'/f'{vid}.jpg', rgb(h, w), quality=92)
        lab = label_from([0, 0, 0, 15, 12, 255], h, w, (0, 1, 20, 255))
        save(root/'SegmentationClassAug'/f'{vid}.png', lab, 'L')
        p = Image.fromarray(lab, 'P'); p.putpalette(pal.ravel().tolist())
        (root/'SegmentationClass').mkdir(parents=True, exist_ok=True); p.save(root/'SegmentationClass'/f'{vid}.png')
    lists = root/'ImageSets'/'Segmentation'; lists.mkdir(parents=True, exist_ok=True)
    (lists/'train_aug.txt').write_text(''.join(f'{v}\n' for v in reversed(train)) + '\n')   # unsorted, a blank line
    (lists/'val.txt').write_text(''.join(f'{v}\n' for v in val))
    (lists/'train.txt').write_text(''.join(f'/JPEGImages/{v}.jpg /SegmentationClassAug/{v}.png\n' for v in train[:2]))   # DeepLab's list format
    return root


def gta5(root, n=3, size=(26, 48)):
    "images/00001.png and labels/00001.png: palette PNGs whose indices are Cityscapes label ids."
    root, h, w = Path(root), *size
    pal = RNG.integers(0, 255, (256, 3)).astype(np.uint8)
    for k in range(1, n + 1):
        save(root/'images'/f'{k:05d}.png', rgb(h, w))
        p = Image.fromarray(label_from(range(34), h, w, CS_CORNER), 'P'); p.putpalette(pal.ravel().tolist())
        (root/'labels').mkdir(parents=True, exist_ok=True); p.save(root/'labels'/f'{k:05d}.png')
    return root


SYN_CORNER = (3, 4, 2, 21, 5, 7, 15, 9, 6, 1, 10, 17, 8, 19, 12, 11, 0, 13, 14, 16, 18, 20, 22)


def synthia(root, n=3, size=(24, 40)):
    "RAND_CITYSCAPES: RGB/0000000.png, GT/COLOR/0000000.png and GT/LABELS/0000000.png (16-bit RGB: class, instance, 0)."
    root, h, w = Path(root), *size
    for k in range(n):
        save(root/'RGB'/f'{k:07d}.png', rgb(h, w))
        cls = label_from(range(23), h, w, SYN_CORNER).astype(np.uint16)
        inst = np.where(np.isin(cls, (8, 10)), RNG.integers(256, 4000, (h, w)), 0)   # instance ids above 255
        png16(root/'GT'/'LABELS'/f'{k:07d}.png', np.stack([cls, inst, np.zeros_like(cls)], -1))
        save(root/'GT'/'COLOR'/f'{k:07d}.png', rgb(h, w))
    return root


def camvid(root, splits={'train': 4, 'val': 2, 'test': 2}, size=(18, 24), sequences=('0001TP',)):
    """SegNet layout: <split>/0001TP_006690.png and <split>annot/0001TP_006690.png (values 0-10, 11 void), <split>.txt;
    the training and val frames taken in turn from `sequences` (file-name prefixes, as CamVid's clips)."""
    root, h, w = Path(root), *size
    for split, n in splits.items():
        lines = []
        for k in range(n):
            name = f'{sequences[k % len(sequences)]}_{6690 + 30*k:06d}.png' if split != 'test' else f'Seq05VD_f{30*k:05d}.png'
            save(root/split/name, rgb(h, w)); save(root/f'{split}annot'/name, label_from(range(12), h, w, (0, 10, 11)), 'L')
            lines.append(f'{split}/{name} {split}annot/{name}\n')
        (root/f'{split}.txt').write_text(''.join(lines))
    return root


def folder(root, splits={'train': 6, 'val': 2}, size=(16, 24), table=True):
    "The lab's folder layout: images/<split>/*.jpg, labels/<split>/*.png (values 0, 1, 5; 255 ignored) and classes.json."
    import json
    root, h, w = Path(root), *size
    for split, n in splits.items():
        for k in range(n):
            save(root/'images'/split/f'frame{k:03d}.jpg', rgb(h, w))
            save(root/'labels'/split/f'frame{k:03d}.png', label_from((0, 1, 5, 255), h, w, (0, 1, 5)), 'L')
    if table:
        (root/'classes.json').write_text(json.dumps({'classes': [{'name': 'floor', 'color': [120, 120, 120]}, {'name': 'wall', 'color': [200, 180, 90]},
                                                                 {'name': 'door', 'color': [30, 60, 200], 'value': 5}], 'ignore': [255]}))
    return root
