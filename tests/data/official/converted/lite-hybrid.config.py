# written by hrnas convert: the network of stem=lite width=24 modules=1,2,1 blocks=1 block=shuffle/weighting/weighting cross=crw within=sw cross_ratio=4 within_ratio=4 dsc_groups=1 kernels=1 fuse=official transition=dw head=iterative
model = dict(
    type='TopDown',
    backbone=dict(type='LiteHRNet', in_channels=3, extra=dict(
        stem=dict(stem_channels=32, out_channels=32, expand_ratio=1),
        num_stages=3,
        stages_spec=dict(
            num_modules=(1, 2, 1,),
            num_branches=(2, 3, 4,),
            num_blocks=(1, 1, 1,),
            module_type=('NAIVE', 'LITE', 'LITE',),
            reduce_ratios=(8, 4, 4,),
            with_fuse=(True, True, True),
            num_channels=((24, 48), (24, 48, 96), (24, 48, 96, 192),)),
        with_head=True)),
    keypoint_head=dict(type='TopdownHeatmapSimpleHead', in_channels=24, out_channels=17, num_deconv_layers=0, extra=dict(final_conv_kernel=1)),
)
