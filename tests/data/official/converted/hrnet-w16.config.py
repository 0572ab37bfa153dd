# written by hrnas convert: the network of stem=hrnet width=16 modules=1,1,1 blocks=2 block=residual fuse=sum transition=conv head=simple
model = dict(
    type='TopDown',
    backbone=dict(type='HRNet', in_channels=3, extra=dict(
        stage1=dict(num_modules=1, num_branches=1, block='BOTTLENECK', num_blocks=(4,), num_channels=(64,)),
        stage2=dict(num_modules=1, num_branches=2, block='BASIC', num_blocks=(2, 2), num_channels=(16, 32)),
        stage3=dict(num_modules=1, num_branches=3, block='BASIC', num_blocks=(2, 2, 2), num_channels=(16, 32, 64)),
        stage4=dict(num_modules=1, num_branches=4, block='BASIC', num_blocks=(2, 2, 2, 2), num_channels=(16, 32, 64, 128)))),
    keypoint_head=dict(type='TopdownHeatmapSimpleHead', in_channels=16, out_channels=17, num_deconv_layers=0, extra=dict(final_conv_kernel=1)),
)
