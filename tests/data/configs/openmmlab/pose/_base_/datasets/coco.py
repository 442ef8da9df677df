dataset_info = dict(
    dataset_name='coco',
    paper_info=dict(
        author='Lin, Tsung-Yi and Maire, Michael',
        title='Microsoft coco: Common objects in context',
        container='European conference on computer vision',
        year='2014',
        homepage='http://cocodataset.org/',
    ),
    keypoint_info={
        0:
        dict(name='nose', id=0, color=[51, 153, 255], type='upper', swap=''),
        1:
        dict(
            name='left_eye',
            id=1,
            color=[51, 153, 255],
            type='upper',
            swap='right_eye'),
        2:
        dict(
            name='right_eye',
            id=2,
            color=[51, 153, 255],
            type='upper',
            swap='left_eye'),
    },
    skeleton_info={
        0: dict(link=('left_eye', 'nose'), id=0, color=[0, 255, 0]),
        1: dict(link=('right_eye', 'nose'), id=1, color=[255, 128, 0]),
    },
    joint_weights=[1., 1., 1.2],
    sigmas=[0.026, 0.025, 0.025])
